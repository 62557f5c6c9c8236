// The Bun comparison of benches/baselines.sh: `Bun.serve` on 127.0.0.1:PORT (first argument, default 9001) where every
// connection is in one topic and every message received is published to it, sender included (`server.publish`:
// uWebSockets' own pub/sub, which frames a message once for every subscriber).
const port = Number(process.argv[2] || 9001);
const server = Bun.serve({
  hostname: "127.0.0.1",
  port,
  fetch(request, server) {
    if (server.upgrade(request)) return undefined;
    return new Response("a WebSocket room", { status: 426 });
  },
  websocket: {
    perMessageDeflate: false,
    open(ws) {
      ws.subscribe("room");
    },
    message(_ws, message) {
      server.publish("room", message);
    },
  },
});
