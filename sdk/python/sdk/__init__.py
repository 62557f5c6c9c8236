"""Eclipse Dirigible's ``sdk`` package for wasmsock handlers, so that a Dirigible handler's imports work unchanged: only
``sdk.net`` (``from sdk.net import websockets``), which is the ``wasmsock`` SDK under that name.
"""
