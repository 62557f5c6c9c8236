;; The floor of a `per-event` event in wasmtime: the smallest component the host runs, with no memory and no imports;
;; its `on-event` does nothing. See BENCHMARKS.md, "Round six", for what it costs and how it is built and measured.
(component
  (core module $m (func (export "on-event")))
  (core instance $i (instantiate $m))
  (func (export "on-event") (canon lift (core func $i "on-event")))
)
