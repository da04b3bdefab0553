#!/usr/bin/env python3
"""vu-trace.py LISTEN BACKEND [LOG] - record a vhost-user conversation.

Listens on the unix socket LISTEN, and for the one front-end that connects
opens a connection to BACKEND, then relays bytes and SCM_RIGHTS descriptors
both ways unchanged while writing one line per message to LOG (default
stderr): direction, request name, flags, payload summary, fd count. Exits
when either side closes. A test tool for comparing front-ends: it shows what
a front-end sends, in what order, without changing the back-end.
"""
import array
import select
import socket
import struct
import sys

NAMES = {
    1: "GET_FEATURES", 2: "SET_FEATURES", 3: "SET_OWNER", 4: "RESET_OWNER",
    5: "SET_MEM_TABLE", 6: "SET_LOG_BASE", 7: "SET_LOG_FD", 8: "SET_VRING_NUM",
    9: "SET_VRING_ADDR", 10: "SET_VRING_BASE", 11: "GET_VRING_BASE",
    12: "SET_VRING_KICK", 13: "SET_VRING_CALL", 14: "SET_VRING_ERR",
    15: "GET_PROTOCOL_FEATURES", 16: "SET_PROTOCOL_FEATURES", 17: "GET_QUEUE_NUM",
    18: "SET_VRING_ENABLE", 19: "SEND_RARP", 20: "NET_SET_MTU",
    21: "SET_BACKEND_REQ_FD", 22: "IOTLB_MSG", 23: "SET_VRING_ENDIAN",
    24: "GET_CONFIG", 25: "SET_CONFIG", 31: "GET_INFLIGHT_FD", 32: "SET_INFLIGHT_FD",
    34: "RESET_DEVICE", 35: "VRING_KICK", 36: "GET_MAX_MEM_SLOTS", 37: "ADD_MEM_REG",
    38: "REM_MEM_REG", 39: "SET_STATUS", 40: "GET_STATUS",
}
BACKEND_NAMES = {1: "IOTLB_MSG", 2: "CONFIG_CHANGE_MSG", 3: "VRING_HOST_NOTIFIER_MSG"}
STATE = {8, 10, 11, 18}
FDMSG = {12, 13, 14}
U64 = {1, 2, 15, 16, 17, 36, 39, 40}


def summary(req, payload, reply):
    """A short, stable description of the payload (no addresses)."""
    if reply and req != 11 and len(payload) == 8 and req not in (24,):
        return "0x%x" % struct.unpack_from("<Q", payload)[0]  # an ack or a u64 answer
    if req in STATE and len(payload) >= 8:
        index, num = struct.unpack_from("<II", payload)
        return "index=%u num=%u" % (index, num)
    if req in FDMSG and len(payload) >= 8:
        v = struct.unpack_from("<Q", payload)[0]
        return "index=%u%s" % (v & 0xFF, " nofd" if v & 0x100 else "")
    if req in U64 and len(payload) >= 8:
        return "0x%x" % struct.unpack_from("<Q", payload)[0]
    if req == 9 and len(payload) >= 8:
        return "index=%u flags=%u" % struct.unpack_from("<II", payload)
    if req == 5 and len(payload) >= 4:
        return "regions=%u" % struct.unpack_from("<I", payload)[0]
    if req in (24, 25) and len(payload) >= 8:
        return "offset=%u size=%u" % struct.unpack_from("<II", payload)
    if req in (37, 38) and len(payload) >= 24:
        return "size=%u" % struct.unpack_from("<Q", payload, 16)[0]
    return "%u bytes" % len(payload)


def recv_exact(sock, n):
    """n bytes from sock, or None at end of stream."""
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def recv_msg(sock):
    """One whole message and the descriptors that came with its header:
    they travel with the first byte, so the header is read on its own."""
    fds = array.array("i")
    hdr, anc, _, _ = sock.recvmsg(12, socket.CMSG_SPACE(64 * fds.itemsize))
    for level, kind, cdata in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(cdata[: len(cdata) - len(cdata) % fds.itemsize])
    if not hdr:
        return None, []
    if len(hdr) < 12:
        rest = recv_exact(sock, 12 - len(hdr))
        if rest is None:
            return None, list(fds)
        hdr += rest
    size = struct.unpack_from("<III", hdr)[2]
    payload = recv_exact(sock, size) if size else b""
    if payload is None:
        return None, list(fds)
    return hdr + payload, list(fds)


def describe(tag, names, msg, nfds):
    req, flags, _ = struct.unpack_from("<III", msg)
    reply = bool(flags & 4)
    name = names.get(req, "request-%u" % req)
    extra = (" need_reply" if flags & 8 else "") + (" fds=%u" % nfds if nfds else "")
    return "%s %s%s %s%s\n" % (tag, name, " reply" if reply else "", summary(req, msg[12:], reply), extra)


def relay(src, dst, tag, names, out, channels):
    """Moves one message from src to dst. A SET_BACKEND_REQ_FD socket is
    replaced by one end of a pair of ours, so that channel is traced too."""
    msg, fds = recv_msg(src)
    if msg is None:
        for fd in fds:
            socket.close(fd)
        return False
    passed, ours = list(fds), None
    if struct.unpack_from("<I", msg)[0] == 21 and tag == ">" and passed:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        channels.append((mine, socket.socket(fileno=passed[0])))
        passed[0], ours = theirs.fileno(), theirs
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", passed).tobytes())] if passed else []
    dst.sendmsg([msg], anc)
    out.write(describe(tag, names, msg, len(passed)))
    out.flush()
    if ours is not None:
        ours.close()
        passed = passed[1:]
    for fd in passed:
        socket.close(fd)
    return True


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    out = open(sys.argv[3], "w") if len(sys.argv) > 3 else sys.stderr
    lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lsock.bind(sys.argv[1])
    lsock.listen(1)
    front, _ = lsock.accept()
    back = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    back.connect(sys.argv[2])
    streams = {front: (back, ">", NAMES), back: (front, "<", NAMES)}
    channels = []
    while True:
        for mine, frontend_end in channels:
            if mine not in streams:
                # the back-end writes on its end (ours), the front-end answers
                streams[mine] = (frontend_end, "<<", BACKEND_NAMES)
                streams[frontend_end] = (mine, ">>", BACKEND_NAMES)
        ready, _, _ = select.select(list(streams), [], [])
        for s in ready:
            dst, tag, names = streams[s]
            try:
                alive = relay(s, dst, tag, names, out, channels)
            except OSError:
                alive = False
            if not alive:
                if s in (front, back):
                    out.write("# %s closed\n" % ("front-end" if s is front else "back-end"))
                    return
                del streams[s]
                del streams[dst]


if __name__ == "__main__":
    main()
