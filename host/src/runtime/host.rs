//! The `websockets` imports: what a handler can read about its event and do to connections and channels.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use wasmtime::component::Resource;

use wasmsock_wire::descriptor::project_of;
use wasmsock_wire::{ClientInfo, ClientOptions, EventKind, Frame, Payload};

use super::bindings::wasmsock::websockets::websockets as wit;
use super::services::{Connection, Gathered};
use super::state::{ClientRef, State};

/// How many connection handles one handler call may hold at once; past this a call traps instead of growing the table.
const MAX_HANDLES_PER_CALL: usize = 10_000;

impl State {
    fn handle(&mut self, conn: Arc<dyn Connection>) -> wasmtime::Result<Resource<ClientRef>> {
        if self.handles >= MAX_HANDLES_PER_CALL {
            return Err(wasmtime::Error::msg(format!(
                "handler {} holds more than {MAX_HANDLES_PER_CALL} connection handles in one call",
                self.handler
            )));
        }
        self.handles += 1;
        Ok(self.table.push(ClientRef { conn })?)
    }

    fn create(
        &mut self,
        uri: &str,
        handler: &str,
        options: ClientOptions,
    ) -> wasmtime::Result<Result<Resource<ClientRef>, wit::Error>> {
        match self.services.create_websocket(project_of(&self.handler), uri, handler, options) {
            Ok(conn) => Ok(Ok(self.handle(conn)?)),
            Err(err) => Ok(Err(err.into())),
        }
    }

    fn publish_frame(&self, channel: &str, frame: Frame, options: wit::PublishOptions) -> Result<u32, wit::Error> {
        let skip = options.skip_self.then(|| self.event.conn.id());
        self.services.publish(project_of(&self.handler), channel, frame, skip).map_err(Into::into)
    }

    /// Publishes with a position: on a host alone the future is ready at once (awaiting it costs nothing); in a
    /// cluster it waits for the broker's acknowledgement, off the handler's clock.
    fn publish_with_frame(
        &self,
        channel: &str,
        frame: Frame,
        options: wit::PublishOptions,
    ) -> impl Future<Output = Result<wit::Published, wit::Error>> + Send + 'static {
        let skip = options.skip_self.then(|| self.event.conn.id());
        let published = self.services.publish_with(project_of(&self.handler), channel, frame, skip);
        let published = self.off_the_clock(published);
        async move { published.await.map(Into::into).map_err(Into::into) }
    }

    /// Every live connection of the caller's project: this host's, then the other hosts' that answered in time. The
    /// future holds no borrow of the state (which is not `Sync`).
    fn survey(&self) -> impl Future<Output = Gathered<Vec<ClientInfo>>> + Send + 'static {
        let project = project_of(&self.handler).to_owned();
        let services = self.services.clone();
        let wait = self.off_the_clock(async move { services.remote_connections(&project).await });
        let mut all = self.services.connections(project_of(&self.handler));
        async move {
            let remote = wait.await;
            all.extend(remote.answer);
            Gathered { answer: all, missing_hosts: remote.missing_hosts }
        }
    }

    /// Awaits `wait` (an answer from the other hosts of the cluster, bounded by its own deadline) without counting the
    /// time against the handler's deadline, as time yielded to other tasks is not counted.
    pub(super) fn off_the_clock<T: Send>(
        &self,
        wait: impl Future<Output = T> + Send + 'static,
    ) -> impl Future<Output = T> + Send + 'static {
        let yielded = self.yielded.clone();
        let turn = self.turn.clone();
        async move {
            let away = Instant::now();
            // Without its execution slot meanwhile: a wait for other hosts runs nothing here.
            let answer = match turn {
                Some(turn) => turn.away(wait).await,
                None => wait.await,
            };
            let nanos = u64::try_from(away.elapsed().as_nanos()).unwrap_or(u64::MAX);
            yielded.fetch_add(nanos, Ordering::AcqRel);
            answer
        }
    }

    fn conn_of(&self, client: &Resource<ClientRef>) -> wasmtime::Result<Arc<dyn Connection>> {
        Ok(self.table.get(client)?.conn.clone())
    }
}

impl wit::HostWebsocketClient for State {
    fn info(&mut self, client: Resource<ClientRef>) -> wasmtime::Result<wit::ClientInfo> {
        Ok(self.conn_of(&client)?.info().into())
    }

    fn send(&mut self, client: Resource<ClientRef>, message: String) -> wasmtime::Result<Result<(), wit::Error>> {
        Ok(self.conn_of(&client)?.send(Frame::Text(message.into())).map_err(Into::into))
    }

    fn send_binary(&mut self, client: Resource<ClientRef>, data: Vec<u8>) -> wasmtime::Result<Result<(), wit::Error>> {
        Ok(self.conn_of(&client)?.send(Frame::Binary(data.into())).map_err(Into::into))
    }

    fn close(
        &mut self,
        client: Resource<ClientRef>,
        code: Option<u16>,
        reason: Option<String>,
    ) -> wasmtime::Result<Result<(), wit::Error>> {
        Ok(self.conn_of(&client)?.close(code, reason).map_err(Into::into))
    }

    fn join(&mut self, client: Resource<ClientRef>, channel: String) -> wasmtime::Result<Result<(), wit::Error>> {
        let conn = self.conn_of(&client)?;
        Ok(self.services.join(project_of(&self.handler), conn.as_ref(), &channel).map_err(Into::into))
    }

    fn leave(&mut self, client: Resource<ClientRef>, channel: String) -> wasmtime::Result<Result<bool, wit::Error>> {
        let conn = self.conn_of(&client)?;
        Ok(self.services.leave(project_of(&self.handler), conn.as_ref(), &channel).map_err(Into::into))
    }

    fn channels(&mut self, client: Resource<ClientRef>) -> wasmtime::Result<Vec<String>> {
        let conn = self.conn_of(&client)?;
        Ok(self.services.channels_of(project_of(&self.handler), conn.as_ref()))
    }

    fn attachment(&mut self, client: Resource<ClientRef>) -> wasmtime::Result<Option<Vec<u8>>> {
        Ok(self.conn_of(&client)?.attachment())
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
            EventKind::Message(Payload::Text(text)) => Some(text.as_str().to_owned()),
            _ => None,
        })
    }

    fn get_binary_message(&mut self) -> wasmtime::Result<Option<Vec<u8>>> {
        Ok(match &self.event.kind {
            EventKind::Message(Payload::Binary(data)) => Some(data.to_vec()),
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
        self.handle(self.event.conn.clone())
    }

    fn send(&mut self, message: String) -> wasmtime::Result<Result<(), wit::Error>> {
        Ok(self.event.conn.send(Frame::Text(message.into())).map_err(Into::into))
    }

    fn close(&mut self, code: Option<u16>, reason: Option<String>) -> wasmtime::Result<Result<(), wit::Error>> {
        Ok(self.event.conn.close(code, reason).map_err(Into::into))
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

    async fn get_clients(&mut self) -> wasmtime::Result<Vec<wit::ClientInfo>> {
        Ok(self.survey().await.answer.into_iter().map(Into::into).collect())
    }

    async fn survey_clients(&mut self) -> wasmtime::Result<wit::ClientsSurvey> {
        Ok(self.survey().await.into())
    }

    async fn get_client(&mut self, id: String) -> wasmtime::Result<Option<Resource<ClientRef>>> {
        let project = project_of(&self.handler).to_owned();
        let conn = match self.services.connection(&project, &id) {
            Some(conn) => Some(conn),
            None => self.off_the_clock(self.services.remote_connection(&project, &id)).await,
        };
        match conn {
            Some(conn) => Ok(Some(self.handle(conn)?)),
            None => Ok(None),
        }
    }

    fn join(&mut self, channel: String) -> wasmtime::Result<Result<(), wit::Error>> {
        Ok(self.services.join(project_of(&self.handler), self.event.conn.as_ref(), &channel).map_err(Into::into))
    }

    fn leave(&mut self, channel: String) -> wasmtime::Result<Result<bool, wit::Error>> {
        Ok(self.services.leave(project_of(&self.handler), self.event.conn.as_ref(), &channel).map_err(Into::into))
    }

    fn get_channels(&mut self) -> wasmtime::Result<Vec<String>> {
        Ok(self.services.channels_of(project_of(&self.handler), self.event.conn.as_ref()))
    }

    fn publish(
        &mut self,
        channel: String,
        message: String,
        options: wit::PublishOptions,
    ) -> wasmtime::Result<Result<u32, wit::Error>> {
        Ok(self.publish_frame(&channel, Frame::Text(message.into()), options))
    }

    fn publish_binary(
        &mut self,
        channel: String,
        data: Vec<u8>,
        options: wit::PublishOptions,
    ) -> wasmtime::Result<Result<u32, wit::Error>> {
        Ok(self.publish_frame(&channel, Frame::Binary(data.into()), options))
    }

    async fn publish_with(
        &mut self,
        channel: String,
        message: String,
        options: wit::PublishOptions,
    ) -> wasmtime::Result<Result<wit::Published, wit::Error>> {
        Ok(self.publish_with_frame(&channel, Frame::Text(message.into()), options).await)
    }

    async fn publish_binary_with(
        &mut self,
        channel: String,
        data: Vec<u8>,
        options: wit::PublishOptions,
    ) -> wasmtime::Result<Result<wit::Published, wit::Error>> {
        Ok(self.publish_with_frame(&channel, Frame::Binary(data.into()), options).await)
    }

    async fn get_history(
        &mut self,
        channel: String,
        since: Option<wit::StreamPosition>,
        limit: u32,
    ) -> wasmtime::Result<Result<wit::HistoryPage, wit::Error>> {
        let page = self.services.history(project_of(&self.handler), &channel, since.map(Into::into), limit);
        Ok(self.off_the_clock(page).await.map(Into::into).map_err(Into::into))
    }

    async fn join_from(
        &mut self,
        channel: String,
        since: Option<wit::StreamPosition>,
        options: wit::JoinOptions,
    ) -> wasmtime::Result<Result<wit::Recovery, wit::Error>> {
        let joined = self.services.join_from(
            project_of(&self.handler),
            self.event.conn.as_ref(),
            &channel,
            since.map(Into::into),
            options.envelope,
        );
        Ok(self.off_the_clock(joined).await.map(Into::into).map_err(Into::into))
    }

    async fn get_members(
        &mut self,
        channel: String,
        after: Option<String>,
        limit: u32,
    ) -> wasmtime::Result<Result<wit::MembersPage, wit::Error>> {
        let page = self.services.members(project_of(&self.handler), &channel, after.as_deref(), limit);
        let page = self.off_the_clock(page).await;
        Ok(page.map(|gathered| gathered.answer.into()).map_err(Into::into))
    }

    async fn survey_members(
        &mut self,
        channel: String,
        after: Option<String>,
        limit: u32,
    ) -> wasmtime::Result<Result<wit::MembersSurvey, wit::Error>> {
        let page = self.services.members(project_of(&self.handler), &channel, after.as_deref(), limit);
        let page = self.off_the_clock(page).await;
        Ok(page.map(Into::into).map_err(Into::into))
    }

    fn set_attachment(&mut self, data: Option<Vec<u8>>) -> wasmtime::Result<Result<(), wit::Error>> {
        Ok(self.event.conn.set_attachment(data).map_err(Into::into))
    }

    fn get_attachment(&mut self) -> wasmtime::Result<Option<Vec<u8>>> {
        Ok(self.event.conn.attachment())
    }

    async fn get_client_by_handler(&mut self, handler: String) -> wasmtime::Result<Option<Resource<ClientRef>>> {
        let found = self.services.client_by_handler(project_of(&self.handler), &handler);
        match self.off_the_clock(found).await {
            Some(conn) => Ok(Some(self.handle(conn)?)),
            None => Ok(None),
        }
    }
}
