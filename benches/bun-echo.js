// The Bun comparison of benches/baselines.sh: `Bun.serve` on 127.0.0.1:PORT (first argument, default 9001) whose
// WebSocket handler sends every message back as it came (uWebSockets underneath; no compression).
const port = Number(process.argv[2] || 9001);
Bun.serve({
  hostname: "127.0.0.1",
  port,
  fetch(request, server) {
    if (server.upgrade(request)) return undefined;
    return new Response("a WebSocket echo", { status: 426 });
  },
  websocket: {
    perMessageDeflate: false,
    message(ws, message) {
      ws.send(message);
    },
  },
});
