#!/usr/bin/env python3
"""Sends the same requests through smokescreen and stopover-egress and lists every disagreement.

    python3 benches/egress_differential.py SMOKESCREEN_BINARY STOPOVER_EGRESS_BINARY

Not part of `cargo test`. It runs inside a network namespace with only a loopback interface
(it re-runs itself under `unshare --net`, so it needs root): several destinations are public or
special addresses that one of the two proxies allows, and there a connection attempt can only
fail ("network unreachable") instead of leaving the machine. Names are answered by a DNS server
of the script's own on loopback, given to both proxies with --resolver-address.

For each request it compares the status, the CONNECT reason phrase, X-Smokescreen-Error and the
body. Each disagreement is printed with the reason from KNOWN (the README's list of differences),
or as UNEXPLAINED, which makes the script exit 1.
"""
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

# Why the two proxies answer differently, by case name (README: "Where it differs").
KNOWN = {
    "unknown name": "Go's resolver names the server of /etc/resolv.conf in its error although "
                    "it asked --resolver-address; stopover-egress names the server it asked",
    "Oracle metadata 192.0.0.192": "smokescreen allows 192.0.0.0/24; stopover's policy denies "
                                   "the IANA special-purpose block",
    "benchmarking 198.18.0.1": "smokescreen allows 198.18.0.0/15; stopover denies it",
    "TEST-NET 192.0.2.1": "smokescreen allows the documentation ranges; stopover denies them",
    "reserved 240.0.0.1": "smokescreen allows 240.0.0.0/4; stopover denies it",
    "this-network 0.1.2.3": "smokescreen allows 0.0.0.0/8 beyond 0.0.0.0; stopover denies it",
    "3fff::1 (RFC 9637)": "smokescreen allows 3fff::/20; stopover denies it",
    "5f00::1 (SRv6)": "smokescreen allows 5f00::/16; stopover denies it",
    "site-local fec0::1": "smokescreen allows fec0::/10; stopover denies it",
    "IPv4-compatible ::7f00:1": "smokescreen allows the IPv4-compatible form; stopover judges "
                                "the IPv4 inside (loopback)",
    "SIIT ::ffff:0:7f00:1": "smokescreen allows SIIT; stopover judges the IPv4 inside",
    "NAT64 of 8.8.8.8": "smokescreen denies 64:ff9b::/96 wholesale; stopover judges the IPv4 "
                        "inside (public: allowed, so it fails to connect here)",
    "local NAT64 64:ff9b:1::1": "smokescreen allows 64:ff9b:1::/48; stopover denies it",
    "documentation 2001:db8::1": "smokescreen allows 2001:db8::/32; stopover denies it",
    "deny-address inside allow-range": "smokescreen lets an allow range beat a deny address "
                                       "(its issue #236); stopover's deny rules win",
    "IPv6 literal with an ACL": "smokescreen denies every IPv6 literal once an ACL is loaded; "
                                "stopover judges it like any host",
}

# smokescreen at a3294a6 answers a failed dial with "<nil> (*net.OpError)" instead of Go's error
# text; stopover-egress writes Go's text ("dial tcp ...: connect: network is unreachable"). The
# detail after this prefix is not compared.
CONNECT_FAILED = "Failed to connect to remote host:"

NAMES = {
    "loop.test": ["127.0.0.1"],
    "metadata.test": ["169.254.169.254"],
    "private.test": ["10.0.0.1"],
    "cgnat.test": ["100.64.0.1"],
    "oracle.test": ["192.0.0.192"],
    "bench.test": ["198.18.0.1"],
    "testnet.test": ["192.0.2.1"],
    "reserved.test": ["240.0.0.1"],
    "thisnet.test": ["0.1.2.3"],
    "rfc9637.test": ["3fff::1"],
    "srv6.test": ["5f00::1"],
    "sitelocal.test": ["fec0::1"],
    "compat.test": ["::7f00:1"],
    "siit.test": ["::ffff:0:7f00:1"],
    "nat64public.test": ["64:ff9b::808:808"],
    "nat64private.test": ["64:ff9b::a00:1"],
    "localnat64.test": ["64:ff9b:1::1"],
    "sixtofour.test": ["2002:808:808::1"],
    "doc6.test": ["2001:db8::1"],
    "public.test": ["8.8.8.8"],
    "api.allowed.test": ["8.8.8.8"],
    "allowed.test": ["8.8.8.8"],
    "deep.api.allowed.test": ["8.8.8.8"],
    "notallowed.test": ["8.8.8.8"],
    "everyone.test": ["8.8.8.8"],
    "x.nobody.test": ["8.8.8.8"],
    "xn--bcher-kva.test": ["8.8.8.8"],
}


def connect_case(target):
    return f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n"


def get_case(url, host):
    return f"GET {url} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"


CASES = [
    ("loopback literal", "plain", connect_case("127.0.0.1:9")),
    ("loopback literal, plain HTTP", "plain", get_case("http://127.0.0.1:9/", "127.0.0.1:9")),
    ("CONNECT without a port", "plain", connect_case("example.test")),
    ("not a proxy request", "plain", get_case("/", "x")),
    ("unknown name", "plain", connect_case("nowhere.test:443")),
    ("name resolving to loopback", "plain", connect_case("loop.test:443")),
    ("metadata 169.254.169.254", "plain", connect_case("metadata.test:80")),
    ("private 10.0.0.1", "plain", connect_case("private.test:443")),
    ("CGNAT 100.64.0.1", "plain", connect_case("cgnat.test:443")),
    ("Oracle metadata 192.0.0.192", "plain", connect_case("oracle.test:80")),
    ("benchmarking 198.18.0.1", "plain", connect_case("bench.test:443")),
    ("TEST-NET 192.0.2.1", "plain", connect_case("testnet.test:443")),
    ("reserved 240.0.0.1", "plain", connect_case("reserved.test:443")),
    ("this-network 0.1.2.3", "plain", connect_case("thisnet.test:443")),
    ("3fff::1 (RFC 9637)", "plain", connect_case("rfc9637.test:443")),
    ("5f00::1 (SRv6)", "plain", connect_case("srv6.test:443")),
    ("site-local fec0::1", "plain", connect_case("sitelocal.test:443")),
    ("IPv4-compatible ::7f00:1", "plain", connect_case("compat.test:443")),
    ("SIIT ::ffff:0:7f00:1", "plain", connect_case("siit.test:443")),
    ("NAT64 of 8.8.8.8", "plain", connect_case("nat64public.test:443")),
    ("NAT64 of 10.0.0.1", "plain", connect_case("nat64private.test:443")),
    ("local NAT64 64:ff9b:1::1", "plain", connect_case("localnat64.test:443")),
    ("6to4 of 8.8.8.8", "plain", connect_case("sixtofour.test:443")),
    ("documentation 2001:db8::1", "plain", connect_case("doc6.test:443")),
    ("public 8.8.8.8 (unreachable here)", "plain", connect_case("public.test:443")),
    ("deny-address inside allow-range", "ranges", connect_case("192.168.1.5:443")),
    ("allow-range", "ranges", connect_case("192.168.1.4:443")),
    ("ACL: open role, listed host", "acl", connect_case("public.test:443")),
    ("ACL: enforce default, other host", "acl", connect_case("loop.test:443")),
    ("ACL: global deny list", "acl", connect_case("metadata.test:80")),
    ("IPv6 literal with an ACL", "acl", connect_case("[2606:4700::1]:443")),
    ("ACL glob: one label under", "globs", connect_case("api.allowed.test:443")),
    ("ACL glob: two labels under", "globs", connect_case("deep.api.allowed.test:443")),
    ("ACL glob: the apex is not under", "globs", connect_case("allowed.test:443")),
    ("ACL glob: a lookalike suffix", "globs", connect_case("notallowed.test:443")),
    ("ACL: upper case and a trailing dot", "globs", connect_case("API.Allowed.TEST.:443")),
    ("ACL: global allow under enforce", "globs", connect_case("everyone.test:443")),
    ("ACL: global deny glob", "globs", connect_case("x.nobody.test:443")),
    ("ACL: IDNA host against its punycode entry", "globs", connect_case("xn--bcher-kva.test:443")),
    ("ACL: IPv4 literal listed", "globs", connect_case("8.8.4.4:443")),
    ("ACL: IPv4 literal not listed", "globs", connect_case("8.8.8.8:443")),
    ("ACL: plain HTTP, listed host", "globs",
     get_case("http://api.allowed.test/", "api.allowed.test")),
]

ACL_GLOBS = """version: v1
services: []
default:
  project: globs
  action: enforce
  allowed_domains: ["*.allowed.test", "xn--bcher-kva.test", "8.8.4.4"]
global_allow_list: [everyone.test]
global_deny_list: ["*.nobody.test"]
"""

ACL = """version: v1
services: []
default:
  project: p
  action: enforce
  allowed_domains: [public.test]
global_deny_list: [metadata.test]
"""


def dns_server(sock):
    while True:
        try:
            data, peer = sock.recvfrom(512)
        except OSError:
            return
        at, labels = 12, []
        while data[at]:
            labels.append(data[at + 1:at + 1 + data[at]].decode().lower())
            at += 1 + data[at]
        qtype = struct.unpack("!H", data[at + 1:at + 3])[0]
        name = ".".join(labels)
        found = NAMES.get(name)
        reply = bytearray(data[:at + 5])
        reply[2], reply[3] = 0x81, 0x80 if found is not None else 0x83
        records = []
        for ip in found or []:
            family = socket.AF_INET6 if ":" in ip else socket.AF_INET
            if (qtype == 1 and family == socket.AF_INET) or (qtype == 28 and family == socket.AF_INET6):
                packed = socket.inet_pton(family, ip)
                records.append(b"\xc0\x0c" + struct.pack("!HHIH", qtype, 1, 30, len(packed)) + packed)
        reply[6:12] = struct.pack("!HHH", len(records), 0, 0)
        sock.sendto(bytes(reply) + b"".join(records), peer)


def ask(port, request):
    with socket.create_connection(("127.0.0.1", port), timeout=15) as s:
        s.sendall(request.encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode(errors="replace").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0") or 0)
        s.settimeout(5)
        while len(body) < length:
            chunk = s.recv(65536)
            if not chunk:
                break
            body += chunk
        status_line = lines[0]
        text = body.decode(errors="replace").strip()
        error = headers.get("x-smokescreen-error", "")
        if text.startswith(CONNECT_FAILED):
            text, error = CONNECT_FAILED + " ...", CONNECT_FAILED + " ..."
        return {
            "status": status_line.split(" ", 2)[1] if " " in status_line else status_line,
            "phrase": status_line.split(" ", 2)[2] if status_line.count(" ") >= 2 else "",
            "error": error,
            "body": text,
        }


def start(argv, port):
    proc = subprocess.Popen(argv + ["--listen-ip", "127.0.0.1", "--listen-port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 15
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    sys.exit(f"{argv[0]} did not start")


def main():
    if os.environ.get("EGRESS_DIFFERENTIAL_NETNS") != "1":
        if os.geteuid() != 0:
            sys.exit("needs root, for a network namespace with only loopback (unshare --net)")
        env = dict(os.environ, EGRESS_DIFFERENTIAL_NETNS="1")
        script = "ip link set lo up && exec python3 \"$0\" \"$@\""
        sys.exit(subprocess.call(["unshare", "--net", "--", "sh", "-c", script,
                                  os.path.abspath(__file__)] + sys.argv[1:], env=env))
    with open("/proc/net/dev") as table:
        if any(line.split(":")[0].strip() != "lo" for line in table.readlines()[2:]):
            sys.exit("refusing to run where interfaces other than loopback exist")

    smokescreen, egress = sys.argv[1], sys.argv[2]
    dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dns.bind(("127.0.0.1", 0))
    threading.Thread(target=dns_server, args=(dns,), daemon=True).start()
    resolver = f"127.0.0.1:{dns.getsockname()[1]}"
    tmp = tempfile.mkdtemp()
    acl = os.path.join(tmp, "acl.yaml")
    with open(acl, "w") as f:
        f.write(ACL)
    config = os.path.join(tmp, "config.yaml")
    with open(config, "w") as f:
        f.write(f"allow_missing_role: true\nacl_file: {acl}\n")
    acl_globs = os.path.join(tmp, "acl-globs.yaml")
    with open(acl_globs, "w") as f:
        f.write(ACL_GLOBS)
    config_globs = os.path.join(tmp, "config-globs.yaml")
    with open(config_globs, "w") as f:
        f.write(f"allow_missing_role: true\nacl_file: {acl_globs}\n")

    common = ["--resolver-address", resolver, "--timeout", "2s"]
    setups = {
        "plain": [],
        "ranges": ["--allow-range", "192.168.0.0/16", "--deny-address", "192.168.1.5"],
        "acl": ["--config-file", config],
        "globs": ["--config-file", config_globs],
    }
    disagreements, unexplained = 0, 0
    port = 24750
    for setup, extra in setups.items():
        procs = []
        try:
            s_port, e_port = port, port + 1
            port += 2
            procs.append(start([smokescreen, "--statsd-address", ""] + common + extra, s_port))
            procs.append(start([egress] + common + extra, e_port))
            for name, case_setup, request in CASES:
                if case_setup != setup:
                    continue
                a, b = ask(s_port, request), ask(e_port, request)
                if a == b:
                    print(f"same      {name}: {a['status']} {a['phrase']}")
                    continue
                disagreements += 1
                reason = KNOWN.get(name)
                if reason is None:
                    unexplained += 1
                tag = "DIFFERENT" if reason else "UNEXPLAINED"
                print(f"{tag} {name}")
                for key in ("status", "phrase", "error", "body"):
                    if a[key] != b[key]:
                        print(f"    {key}: smokescreen {a[key]!r}")
                        print(f"    {' ' * len(key)}  stopover    {b[key]!r}")
                if reason:
                    print(f"    why: {reason}")
        finally:
            for proc in procs:
                proc.kill()
                proc.wait()
    print(f"{len(CASES)} requests, {disagreements} disagreements, {unexplained} unexplained")
    sys.exit(1 if unexplained else 0)


if __name__ == "__main__":
    main()
