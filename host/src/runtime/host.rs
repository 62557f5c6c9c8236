//! The `websockets` imports: what a handler can read about its event and do to connections.

use wasmtime::component::Resource;

use super::State;
use super::bindings::wasmsock::websockets::websockets as wit;
use crate::client::ClientOptions;
use crate::event::{EventKind, Payload};
use crate::frame::Frame;
use crate::hub::ConnError;

/// How many connection handles one handler call may hold at once; past this a call traps instead of growing the table.
const MAX_HANDLES_PER_CALL: usize = 10_000;

/// The host side of a guest's `websocket-client` handle: the id of the connection it names.
#[derive(Debug)]
pub struct ClientRef {
    id: String,
}

impl State {
    fn handle(&mut self, id: &str) -> wasmtime::Result<Resource<ClientRef>> {
        if self.handles >= MAX_HANDLES_PER_CALL {
            return Err(wasmtime::Error::msg(format!(
                "handler {} holds more than {MAX_HANDLES_PER_CALL} connection handles in one call",
                self.handler
            )));
        }
        self.handles += 1;
        Ok(self.table.push(ClientRef { id: id.to_owned() })?)
    }

    fn create(
        &mut self,
        uri: &str,
        handler: &str,
        options: ClientOptions,
    ) -> wasmtime::Result<Result<Resource<ClientRef>, wit::Error>> {
        match self.services.create_websocket(uri, handler, options) {
            Ok(conn) => Ok(Ok(self.handle(conn.id())?)),
            Err(err) => Ok(Err(err.into())),
        }
    }

    fn id_of(&self, client: &Resource<ClientRef>) -> wasmtime::Result<String> {
        Ok(self.table.get(client)?.id.clone())
    }

    fn on_conn<T>(
        &self,
        id: &str,
        act: impl FnOnce(&crate::hub::Conn) -> Result<T, ConnError>,
    ) -> Result<T, wit::Error> {
        match self.services.connection(id) {
            Some(conn) => act(&conn).map_err(Into::into),
            None => Err(ConnError::UnknownClient(id.to_owned()).into()),
        }
    }
}

impl wit::HostWebsocketClient for State {
    fn info(&mut self, client: Resource<ClientRef>) -> wasmtime::Result<wit::ClientInfo> {
        let id = self.id_of(&client)?;
        let info = match self.services.connection(&id) {
            Some(conn) => conn.info(),
            // The connection ended while the guest held its handle: say so rather than trap.
            None => crate::hub::ClientInfo {
                id,
                uri: String::new(),
                handler: String::new(),
                endpoint: None,
                direction: crate::hub::Direction::Inbound,
                state: crate::hub::ConnState::Closed,
            },
        };
        Ok(info.into())
    }

    fn send(
        &mut self,
        client: Resource<ClientRef>,
        message: String,
    ) -> wasmtime::Result<Result<(), wit::Error>> {
        let id = self.id_of(&client)?;
        Ok(self.on_conn(&id, |conn| conn.send(Frame::Text(message))))
    }

    fn send_binary(
        &mut self,
        client: Resource<ClientRef>,
        data: Vec<u8>,
    ) -> wasmtime::Result<Result<(), wit::Error>> {
        let id = self.id_of(&client)?;
        Ok(self.on_conn(&id, |conn| conn.send(Frame::Binary(data))))
    }

    fn close(
        &mut self,
        client: Resource<ClientRef>,
        code: Option<u16>,
        reason: Option<String>,
    ) -> wasmtime::Result<Result<(), wit::Error>> {
        let id = self.id_of(&client)?;
        Ok(self.on_conn(&id, |conn| conn.close(code, reason)))
    }

    fn drop(&mut self, client: Resource<ClientRef>) -> wasmtime::Result<()> {
        self.table.delete(client)?;
        self.handles = self.handles.saturating_sub(1);
        Ok(())
    }
}

impl wit::Host for State {
    fn get_method(&mut self) -> wasmtime::Result<wit::Method> {
        Ok(self.event.kind.method().into())
    }

    fn get_message(&mut self) -> wasmtime::Result<Option<String>> {
        Ok(match &self.event.kind {
            EventKind::Message(Payload::Text(text)) => Some(text.clone()),
            _ => None,
        })
    }

    fn get_binary_message(&mut self) -> wasmtime::Result<Option<Vec<u8>>> {
        Ok(match &self.event.kind {
            EventKind::Message(Payload::Binary(data)) => Some(data.clone()),
            _ => None,
        })
    }

    fn get_error(&mut self) -> wasmtime::Result<Option<String>> {
        Ok(match &self.event.kind {
            EventKind::Error(text) => Some(text.clone()),
            _ => None,
        })
    }

    fn current_client(&mut self) -> wasmtime::Result<Resource<ClientRef>> {
        let id = self.event.conn.clone();
        self.handle(&id)
    }

    fn send(&mut self, message: String) -> wasmtime::Result<Result<(), wit::Error>> {
        let id = self.event.conn.clone();
        Ok(self.on_conn(&id, |conn| conn.send(Frame::Text(message))))
    }

    fn close(
        &mut self,
        code: Option<u16>,
        reason: Option<String>,
    ) -> wasmtime::Result<Result<(), wit::Error>> {
        let id = self.event.conn.clone();
        Ok(self.on_conn(&id, |conn| conn.close(code, reason)))
    }

    fn create_websocket(
        &mut self,
        uri: String,
        handler: String,
    ) -> wasmtime::Result<Result<Resource<ClientRef>, wit::Error>> {
        self.create(&uri, &handler, ClientOptions::default())
    }

    fn create_websocket_with(
        &mut self,
        uri: String,
        handler: String,
        options: wit::ClientOptions,
    ) -> wasmtime::Result<Result<Resource<ClientRef>, wit::Error>> {
        self.create(&uri, &handler, options.into())
    }

    fn get_clients(&mut self) -> wasmtime::Result<Vec<wit::ClientInfo>> {
        Ok(self
            .services
            .connections()
            .into_iter()
            .map(Into::into)
            .collect())
    }

    fn get_client(&mut self, id: String) -> wasmtime::Result<Option<Resource<ClientRef>>> {
        match self.services.connection(&id) {
            Some(conn) => Ok(Some(self.handle(conn.id())?)),
            None => Ok(None),
        }
    }

    fn get_client_by_handler(
        &mut self,
        handler: String,
    ) -> wasmtime::Result<Option<Resource<ClientRef>>> {
        match self.services.client_by_handler(&handler) {
            Some(conn) => Ok(Some(self.handle(conn.id())?)),
            None => Ok(None),
        }
    }
}
