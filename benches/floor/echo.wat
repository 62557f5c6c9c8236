;; The floor of an echo in wasmtime: a hand-written component with one page of memory, a bump allocator and the two
;; imports an echo needs (`get-message`, `send`), with no shim module (its memory and allocator sit in a module of
;; their own, so the imports are lowered directly). See BENCHMARKS.md, "Round six".
(component
  (import "wasmsock:websockets/websockets@0.1.4" (instance $ws
    (type $err' (variant (case "unknown-client" string) (case "closed") (case "invalid" string) (case "limit" string)))
    (export "error" (type $e (eq $err')))
    (export "get-message" (func (result (option string))))
    (export "send" (func (param "message" string) (result (result (error $e)))))
  ))
  (alias export $ws "get-message" (func $get))
  (alias export $ws "send" (func $send))
  (core module $libc
    (memory (export "memory") 1)
    (global $bump (mut i32) (i32.const 1024))
    (func (export "realloc") (param i32 i32 i32 i32) (result i32) (local $p i32)
      global.get $bump
      i32.const 60000
      i32.gt_u
      if i32.const 1024 global.set $bump end
      global.get $bump
      local.get 2 i32.const -1 i32.add i32.add
      local.get 2 i32.const -1 i32.add i32.const -1 i32.xor i32.and
      local.tee $p local.get 3 i32.add global.set $bump
      local.get $p))
  (core instance $libc (instantiate $libc))
  (alias core export $libc "memory" (core memory $mem))
  (alias core export $libc "realloc" (core func $realloc))
  (core func $get-l (canon lower (func $get) (memory $mem) (realloc $realloc) string-encoding=utf8))
  (core func $send-l (canon lower (func $send) (memory $mem) (realloc $realloc) string-encoding=utf8))
  (core module $m
    (import "libc" "memory" (memory 1))
    (import "ws" "get-message" (func $get (param i32)))
    (import "ws" "send" (func $send (param i32 i32 i32)))
    (func (export "on-event")
      i32.const 0 call $get
      i32.const 0 i32.load8_u
      if
        i32.const 4 i32.load
        i32.const 8 i32.load
        i32.const 16 call $send
      end))
  (core instance $i (instantiate $m
    (with "libc" (instance $libc))
    (with "ws" (instance (export "get-message" (func $get-l)) (export "send" (func $send-l))))))
  (func (export "on-event") (canon lift (core func $i "on-event")))
)
