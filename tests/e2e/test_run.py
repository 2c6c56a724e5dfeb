"""One-off runs: `paasops run APP -- COMMAND` and POST /v1/apps/NAME/run run a
command once in the app's live release with its environment, stream its
stdout and stderr back as they come, hand back its exit status, and kill it
on --timeout, on Ctrl-C and when the daemon stops."""
import fcntl
import json
import os
import pty
import re
import select
import signal
import socket
import struct
import subprocess
import termios
import time

from conftest import BIN, SLOW, pid_alive, wait_for


def spec(app="job", command="sleep 1000"):
    return f"""app: {app}
env: {{SPEC_VAR: from-spec}}
processes:
  web:
    command: {command}
    instances: 1
    stop_timeout: 2s
"""


def setup_app(d, app="job"):
    d.apply(spec(app))
    d.wait_ready(app, 1)


def run_cli(d, *args, **kw):
    return d.cli("run", *args, **kw)


def api_run(d, body, read_delay=0.0):
    """POSTs a run on the unix socket; returns (status, [lines]) with the
    NDJSON lines parsed. read_delay: seconds to wait before reading at all."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(60 * SLOW)
    s.connect(d.sock)
    data = json.dumps(body).encode()
    s.sendall(b"POST /v1/apps/job/run HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: " + str(len(data)).encode() + b"\r\n\r\n" + data)
    if read_delay:
        time.sleep(read_delay)
    f = s.makefile("rb")
    status = int(f.readline().split()[1])
    headers = {}
    while True:
        line = f.readline().strip()
        if not line:
            break
        k, v = line.decode().split(":", 1)
        headers[k.lower()] = v.strip()
    if headers.get("transfer-encoding") != "chunked":
        body = f.read(int(headers.get("content-length", 0)))
        s.close()
        return status, json.loads(body)
    raw = b""
    while True:
        n = int(f.readline().strip(), 16)
        if n == 0:
            break
        raw += f.read(n)
        f.readline()
    s.close()
    return status, [json.loads(l) for l in raw.decode().splitlines() if l]


def test_run_streams_both_outputs_with_the_release_environment_and_exit_status(daemon):
    setup_app(daemon)
    r = daemon.cli("config", "set", "job", "PLAIN=visible", "--wait")
    assert r.returncode == 0, r.stderr
    r = daemon.cli("config", "set", "job", "TOKEN=s3cr3t", "--secret", "--wait")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: daemon.ok("GET", "/v1/apps/job")["release"] == 3, what="release v3 to be live")
    r = run_cli(daemon, "job", 'echo "$SPEC_VAR $PLAIN $TOKEN $PAASOPS_APP $PAASOPS_RELEASE"; '
                'pwd; echo oops >&2; exit 7')
    assert r.returncode == 7, r.stderr
    assert r.stdout == f"from-spec visible s3cr3t job v3\n{daemon.tmp}\n"
    assert r.stderr == "oops\n"
    # Several words reach the command one for one, quotes and all.
    r = run_cli(daemon, "job", "--", "printf", "[%s]", "a b", "it's", "$HOME", "")
    assert (r.returncode, r.stdout) == (0, "[a b][it's][$HOME][]"), r.stderr
    # The output is in the app's log under stream "run", and events tell the story.
    lines = daemon.ok("GET", "/v1/apps/job/logs?lines=100")["lines"]
    assert "oops" in [l["line"] for l in lines if l["stream"] == "run"]
    wait_for(lambda: "oops" in daemon.cli("logs", "job", "--stream", "run").stdout,
             what="the run's output in the log store")
    msgs = [e["reason"] for e in daemon.events("job") if e["type"] == "run"]
    assert any("exited with status 7" in m for m in msgs), msgs


def test_a_run_gets_every_config_var_however_many_and_config_over_spec_env(daemon):
    setup_app(daemon)
    body = {"set": {f"V_{k}": f"value-{k}" for k in range(1, 301)}}
    body["set"]["SPEC_VAR"] = "from-config"
    daemon.ok("POST", "/v1/apps/job/config", body)
    wait_for(lambda: daemon.ok("GET", "/v1/apps/job")["release"] == 2, timeout=60, what="release v2 to be live")
    r = run_cli(daemon, "job", "--", "env | grep -c ^V_; echo $V_300; env | grep -c ^SPEC_VAR=; echo $SPEC_VAR")
    assert (r.returncode, r.stdout) == (0, "300\nvalue-300\n1\nfrom-config\n"), r


def test_the_command_inherits_no_descriptor_of_the_daemon(daemon):
    setup_app(daemon)
    # 0-2, and 3: the directory ls reads. Not the daemon's sockets (libcurl's
    # wake-up pair was once inherited by every run and instance).
    r = run_cli(daemon, "job", "ls /proc/self/fd")
    assert r.returncode == 0 and r.stdout.split() == ["0", "1", "2", "3"], r.stdout
    r = run_cli(daemon, "job", "--tty", "ls /proc/self/fd")
    assert r.returncode == 0 and r.stdout.split() == ["0", "1", "2", "3"], r.stdout


def test_the_api_answers_ndjson_and_holds_a_slow_reader_without_loss(daemon):
    setup_app(daemon)
    status, lines = api_run(daemon, {"command": "echo hi; echo there >&2"})
    assert status == 200
    assert set(lines[0]) == {"run", "release", "pid"} and lines[0]["run"].startswith("job.run.")
    out = "".join(l["data"] for l in lines if l.get("stream") == "stdout")
    err = "".join(l["data"] for l in lines if l.get("stream") == "stderr")
    assert (out, err, lines[-1]) == ("hi\n", "there\n", {"exit_status": 0})
    # 12 MB while the client reads nothing for a while: the daemon queues
    # up to its limit, then holds the command up; not a byte is lost.
    status, lines = api_run(daemon, {"command": "head -c 12000000 /dev/zero | tr '\\0' x"}, read_delay=1.5)
    assert status == 200
    assert sum(len(l["data"]) for l in lines if "data" in l) == 12_000_000
    assert lines[-1] == {"exit_status": 0}


def test_a_nul_in_the_output_keeps_what_follows(daemon):
    setup_app(daemon)
    r = run_cli(daemon, "job", r"printf 'a\000b\n'")
    assert r.returncode == 0 and r.stdout == "a\ufffdb\n", repr(r.stdout)


def test_output_is_utf8_text_even_when_a_read_cuts_a_character(daemon):
    setup_app(daemon)
    status, lines = api_run(daemon, {"command": "printf '\\303'; sleep 0.3; printf '\\251 \\377\\n'"})
    assert status == 200
    assert "".join(l["data"] for l in lines if "data" in l) == "\u00e9 \ufffd\n"


def test_timeout_and_ctrl_c_kill_the_command(daemon, tmp_path):
    setup_app(daemon)
    r = run_cli(daemon, "job", "--timeout", "1s", "--", "sleep", "30")
    assert r.returncode == 128 + 9
    assert "timed out after 1s" in r.stderr
    # Ctrl-C: the CLI stops and the daemon kills the whole process group.
    pidfile = tmp_path / "pid"
    e = dict(os.environ, PAASOPS_SERVER=f"unix:{daemon.sock}")
    cli = subprocess.Popen([BIN, "run", "job", f"echo $$ > {pidfile}; sleep 300 & wait"], env=e,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), what="the command to start")
    pid = int(pidfile.read_text())
    cli.send_signal(signal.SIGINT)
    out, err = cli.communicate(timeout=10 * SLOW)
    assert cli.returncode == 130, err
    wait_for(lambda: not pid_alive(pid), what="the command to be killed")
    wait_for(lambda: [e for e in daemon.events("job") if e["type"] == "run" and "signal 9" in e["reason"]],
             what="an event saying the run was killed")
    # Nothing of it is left: no live process of that group.
    wait_for(lambda: not [p for p in os.listdir("/proc")
                          if p.isdigit() and _pgid(int(p)) == pid and pid_alive(int(p))],
             what="every process of the run's group to be gone")


def _pgid(pid):
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def test_a_stopping_daemon_kills_its_runs(daemon, tmp_path):
    setup_app(daemon)
    pidfile = tmp_path / "pid"
    e = dict(os.environ, PAASOPS_SERVER=f"unix:{daemon.sock}")
    cli = subprocess.Popen([BIN, "run", "job", f"echo $$ > {pidfile}; exec sleep 300"], env=e,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), what="the command to start")
    pid = int(pidfile.read_text())
    assert daemon.stop() == 0
    wait_for(lambda: not pid_alive(pid), what="the run to be killed with the daemon")
    _, err = cli.communicate(timeout=10 * SLOW)
    assert cli.returncode == 3, err
    assert "the connection to the daemon ended before the command did" in err, err


def test_run_names_go_on_across_daemon_restarts(daemon):
    setup_app(daemon)
    assert run_cli(daemon, "job", "true").returncode == 0
    assert run_cli(daemon, "job", "true").returncode == 0
    assert daemon.stop() == 0
    daemon.start()
    daemon.wait_ready("job", 1)
    assert run_cli(daemon, "job", "true").returncode == 0
    started = [e["reason"].split()[2] for e in daemon.events("job")
               if e["type"] == "run" and "started" in e["reason"]]
    assert started == ["job.run.1", "job.run.2", "job.run.3"], started


def test_bad_runs_are_refused_and_change_nothing(daemon):
    setup_app(daemon)
    r = run_cli(daemon, "nope", "true")
    assert r.returncode == 1 and "app 'nope' not found" in r.stderr
    r = run_cli(daemon, "job", "--timeout", "forever", "true")
    assert r.returncode == 2 and "'timeout' must be a duration" in r.stderr
    r = run_cli(daemon, "job", "--timeout", "25h", "true")
    assert r.returncode == 2
    r = run_cli(daemon, "job")
    assert r.returncode == 2 and "missing arguments" in r.stderr
    for body, want in [({}, "'command' must be a non-empty string"),
                       ({"command": ""}, "'command' must be a non-empty string"),
                       ({"command": 3}, "'command' must be a non-empty string"),
                       ({"command": "true", "tty": True}, "'tty' must be an object with 'rows' and 'cols'"),
                       ({"command": "true", "tty": {"rows": 0, "cols": 80}}, "'tty' needs 'rows' and 'cols'"),
                       ({"command": "true", "tty": {"rows": 24}}, "'tty' needs 'rows' and 'cols'"),
                       ({"command": "true", "tty": {"rows": 24, "cols": 80, "term": "a b"}},
                        "'tty.term' must be a terminal type"),
                       ({"command": "true", "stdin": "x"}, "unknown field 'stdin'"),
                       ({"command": "true", "timeout": 5}, "'timeout' must be a duration")]:
        status, doc = daemon.request("POST", "/v1/apps/job/run", body)
        assert status == 400 and want in doc["error"]["message"], (body, doc)
    assert not [e for e in daemon.events("job") if e["type"] == "run"]


def test_runs_need_a_deployer_and_the_audit_log_names_the_run_not_the_command(daemon):
    setup_app(daemon)
    status, viewer = daemon.request("POST", "/v1/tokens", {"role": "viewer"})
    assert status == 201
    status, doc = daemon.request("POST", "/v1/apps/job/run", {"command": "true"}, tcp=True,
                                 token=viewer["token"])
    assert status == 403, doc
    r = run_cli(daemon, "job", "echo the-secret-command-text")
    assert r.returncode == 0
    entries = daemon.ok("GET", "/v1/audit")["entries"]
    runs = [e for e in entries if e["path"] == "/v1/apps/job/run"]
    assert [e["status"] for e in runs] == [403, 200]
    assert runs[1]["detail"].startswith("job.run.")
    assert "the-secret-command-text" not in json.dumps(entries)


class Terminal:
    """The CLI in a pseudo-terminal of our own, as a user at a terminal runs
    it: what it prints is read from the master side, typing is written
    there."""

    def __init__(self, daemon, *args, rows=24, cols=80):
        self.master, slave = pty.openpty()
        self.resize(rows, cols, fd=slave)
        e = dict(os.environ, PAASOPS_SERVER=f"unix:{daemon.sock}", TERM="xterm-256color")
        self.proc = subprocess.Popen([BIN, *args], stdin=slave, stdout=slave, stderr=slave,
                                     env=e, start_new_session=True)
        os.close(slave)
        self.seen = b""

    def resize(self, rows, cols, fd=None):
        fcntl.ioctl(self.master if fd is None else fd, termios.TIOCSWINSZ,
                    struct.pack("HHHH", rows, cols, 0, 0))

    def type(self, text):
        os.write(self.master, text.encode())

    def expect(self, what, timeout=20):
        deadline = time.monotonic() + timeout * SLOW
        while what.encode() not in self.seen:
            left = deadline - time.monotonic()
            assert left > 0, f"no {what!r} in {self.seen!r}"
            r, _, _ = select.select([self.master], [], [], left)
            if r:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:
                    chunk = b""
                assert chunk, f"the terminal closed without {what!r}: {self.seen!r}"
                self.seen += chunk

    def read_some(self):
        """What the terminal has shown so far, after reading what is there."""
        r, _, _ = select.select([self.master], [], [], 0.1)
        if r:
            try:
                self.seen += os.read(self.master, 4096)
            except OSError:
                pass
        return self.seen

    def wait(self, timeout=20):
        rc = self.proc.wait(timeout=timeout * SLOW)
        while True:  # what is left to read
            r, _, _ = select.select([self.master], [], [], 0.2)
            if not r:
                break
            try:
                chunk = os.read(self.master, 4096)
            except OSError:
                break
            if not chunk:
                break
            self.seen += chunk
        os.close(self.master)
        return rc


def test_at_a_terminal_the_command_gets_one_and_what_is_typed(daemon):
    setup_app(daemon)
    t = Terminal(daemon, "run", "job", "--",
                 "sh", "-c", 'tty; stty size; echo "term=$TERM"; read line; echo "got:$line"; exit 4',
                 rows=33, cols=101)
    t.expect("term=xterm-256color")
    assert b"/dev/pts/" in t.seen, t.seen
    assert b"33 101" in t.seen, t.seen
    t.type("hello there\r")
    t.expect("got:hello there")
    assert t.wait() == 4, t.seen
    # Typing was not recorded, one by one, in the audit log: the run was.
    paths = [e["path"] for e in daemon.ok("GET", "/v1/audit")["entries"]]
    assert "/v1/apps/job/run" in paths and not [p for p in paths if p.endswith("/input")], paths


def test_with_tty_and_piped_input_the_end_of_input_reaches_the_command(daemon):
    setup_app(daemon)
    r = run_cli(daemon, "job", "--tty", "read x; echo got:$x; cat; echo end", input="hello\nmore\n")
    assert r.returncode == 0, r.stderr
    assert "got:hello" in r.stdout and r.stdout.rstrip().endswith("end"), r.stdout
    # A last line without its end still ends the input.
    r = run_cli(daemon, "job", "--tty", "cat; echo END", input="abc", timeout=20)
    assert r.returncode == 0 and r.stdout.rstrip().endswith("END"), (r.stdout, r.stderr)


def test_with_tty_more_input_than_the_command_reads_at_once_arrives_whole(daemon):
    setup_app(daemon)
    # 3 MB while the command sleeps: the daemon holds at most 1 MiB of it
    # (429 beyond), and the CLI waits for the command to catch up.
    data = ("x" * 99 + "\n") * 30000
    r = run_cli(daemon, "job", "--tty", "stty -echo; sleep 2; head -c 3000000 | wc -c",
                input=data, timeout=60)
    assert r.returncode == 0, r.stderr
    # (what the terminal echoed before stty turned echo off comes first)
    assert re.search(r"(?<!\d)3000000\s*$", r.stdout), r.stdout[-200:]


def test_leaving_a_shell_ends_the_run_and_its_background_jobs(daemon):
    setup_app(daemon)
    t = Terminal(daemon, "run", "job", "bash")
    t.expect("# ")
    t.type('sleep 1000 & echo "B""G=$!"\r')  # the echo of what is typed has no BG=
    pid = int(wait_for(lambda: re.search(rb"BG=(\d+)", t.read_some()), what="the job's pid").group(1))
    assert pid_alive(pid)
    t.type("exit 5\r")
    assert t.wait() == 5, t.seen
    wait_for(lambda: not pid_alive(pid), what="the shell's background job to be killed")


def test_ctrl_c_and_window_sizes_reach_the_command_at_a_terminal(daemon):
    setup_app(daemon)
    t = Terminal(daemon, "run", "job",
                 "trap 'stty size' WINCH; trap 'echo caught-int; exit 3' INT; echo ready; "
                 "while :; do sleep 0.1; done")
    t.expect("ready")
    # A new window size goes to the command's terminal, which signals it.
    t.resize(40, 132)
    os.kill(t.proc.pid, signal.SIGWINCH)
    t.expect("40 132")
    # Ctrl-C is typed, not a signal to the CLI: the command's terminal
    # turns it into SIGINT for the command, which may catch it.
    t.type("\x03")
    t.expect("caught-int")
    assert t.wait() == 3, (t.seen, [e["reason"] for e in daemon.events("job") if e["type"] == "run"])


def test_tilde_dot_at_a_line_start_leaves_a_run_that_ignores_ctrl_c(daemon, tmp_path):
    setup_app(daemon)
    pidfile = tmp_path / "pid"
    t = Terminal(daemon, "run", "job", f"trap '' INT; echo $$ > {pidfile}; read x; echo got:$x; "
                 "while :; do sleep 0.1; done")
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), what="the command to start")
    pid = int(pidfile.read_text())
    # "~~" is one '~', a '~' inside a line is a '~'.
    t.type("a~b\r")
    t.expect("got:a~b")
    t.type("\x03")  # ignored by the command
    t.type("\r~.")
    assert t.wait() == 130, t.seen
    assert b"interrupted: the command was stopped" in t.seen, t.seen
    wait_for(lambda: not pid_alive(pid), what="the run to be stopped")


def test_a_terminal_that_goes_away_ends_the_run(daemon, tmp_path):
    setup_app(daemon)
    pidfile = tmp_path / "pid"
    t = Terminal(daemon, "run", "job", f"echo $$ > {pidfile}; while :; do sleep 1; done")
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), what="the command to start")
    pid = int(pidfile.read_text())
    # The terminal is not the CLI's controlling one here: no SIGHUP, its
    # input just ends.
    os.close(t.master)
    assert t.proc.wait(timeout=10 * SLOW) == 128 + signal.SIGHUP
    wait_for(lambda: not pid_alive(pid), what="the run to be stopped")


def test_typing_into_a_run_needs_one_with_a_terminal(daemon):
    setup_app(daemon)
    status, doc = daemon.request("POST", "/v1/apps/job/runs/job.run.99/input", {"data": "x"})
    assert status == 404 and "no run 'job.run.99' of app 'job'" in doc["error"]["message"], doc
    e = dict(os.environ, PAASOPS_SERVER=f"unix:{daemon.sock}")
    cli = subprocess.Popen([BIN, "run", "job", "echo started; sleep 300"], env=e,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert cli.stdout.readline() == "started\n"
    run = [r for r in daemon.events("job") if r["type"] == "run"][-1]["reason"].split()[2]
    status, doc = daemon.request("POST", f"/v1/apps/job/runs/{run}/input", {"data": "x"})
    assert status == 409 and "has no terminal" in doc["error"]["message"], doc
    for body, want in [({"data": 5}, "'data' must be a string"),
                       ({"rows": 5}, "the body needs 'rows' and 'cols'"),
                       ({"keys": "x"}, "unknown field 'keys'")]:
        status, doc = daemon.request("POST", f"/v1/apps/job/runs/{run}/input", body)
        assert status == 400 and want in doc["error"]["message"], (body, doc)
    cli.send_signal(signal.SIGINT)
    cli.communicate(timeout=10 * SLOW)
