"""Publishes one broadcast with the socket.io-emitter package from PyPI, for
tests/sio/redis-pyemit.test.js.

Usage: emit.py HOST PORT NAMESPACE ROOM EVENT JSON_ARGS
(ROOM "" for the whole namespace; JSON_ARGS a JSON array of the event's arguments).
"""
import json
import sys

from socket_io_emitter import Emitter

host, port, namespace, room, event, args = sys.argv[1:7]
emitter = Emitter({"host": host, "port": int(port)})
if namespace != "/":
    emitter = emitter.Of(namespace)
if room:
    emitter = emitter.To(room)
emitter.Emit(event, *json.loads(args))
