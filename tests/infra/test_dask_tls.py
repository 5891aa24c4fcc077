"""Dask over TLS and the --host warning: certificates from `infra.stack certs`, a stack started
with --dask-tls on 127.0.0.1 that refuses clients without the certificate, and env.sh that lets
a client in."""

from __future__ import annotations

import os
import socket
import ssl
import stat
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from infra.stack import REPO, Ports, Stack, app
from infra.tls import TlsFiles, make_certs
from tests.conftest import free_port


# --- fast: files, environment, command line (no services) -----------------------------------
def test_certs_command_makes_a_ca_and_a_private_key(tmp_path):
    from cryptography import x509

    result = CliRunner().invoke(
        app, ["certs", "--state-dir", str(tmp_path), "--host", "10.1.2.3", "--host", "dask.example"]
    )
    assert result.exit_code == 0, result.output
    files = TlsFiles.under(tmp_path / "tls")
    assert files.exist()
    assert stat.S_IMODE(files.key.stat().st_mode) == 0o600
    ca = x509.load_pem_x509_certificate(files.ca.read_bytes())
    cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
    cert.verify_directly_issued_by(ca)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "10.1.2.3"}
    assert set(sans.get_values_for_type(x509.DNSName)) == {"localhost", "dask.example"}
    # the files load as Dask will load them: a context that requires the peer's certificate
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=files.ca)
    ctx.load_cert_chain(files.cert, files.key)

    first = files.cert.read_bytes()
    again = CliRunner().invoke(app, ["certs", "--state-dir", str(tmp_path)])
    assert again.exit_code == 2 and "--force" in again.stderr
    assert files.cert.read_bytes() == first
    assert CliRunner().invoke(app, ["certs", "--state-dir", str(tmp_path), "--force"]).exit_code == 0
    assert files.cert.read_bytes() != first


def test_tls_stack_environment(tmp_path):
    stack = Stack(tmp_path, Ports(4331, 4332, 4333))
    assert "DASK_DISTRIBUTED__COMM__TLS__CA_FILE" not in stack.client_env()
    stack._save_meta(
        {
            "running": False,
            "dask": True,
            "config": stack.config.model_copy(update={"dask": True, "dask_tls": True}).model_dump(mode="json"),
        }
    )
    env = stack.client_env()
    assert env["CLAMP_SCHEDULER_ADDRESS"] == "tls://127.0.0.1:4333"
    assert env["DASK_DISTRIBUTED__COMM__TLS__CA_FILE"] == str(tmp_path.resolve() / "tls" / "ca.pem")
    assert env["DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY"] == str(tmp_path.resolve() / "tls" / "dask-key.pem")
    assert env["DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION"] == "True"
    assert stack.env()["DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT"].endswith("dask.pem")  # the Prefect worker's runs


def test_a_host_beyond_loopback_warns_in_one_line(tmp_path):
    with socket.socket() as s:  # a busy port: `up` stops right after the warning
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        result = CliRunner().invoke(
            app, ["up", "--state-dir", str(tmp_path), "--host", "0.0.0.0", "--prefect-port", str(busy)]
        )
    assert result.exit_code == 2
    warning, error = result.stderr.splitlines()
    assert warning.startswith("warning: the services listen on 0.0.0.0 and are reachable from the network")
    assert "Dask runs any code" in warning
    assert error.startswith("error: port(s)")
    bad = CliRunner().invoke(app, ["up", "--state-dir", str(tmp_path), "--host", "not-an-ip"])
    assert bad.exit_code == 2 and "host" in bad.stderr


# --- slow: a real TLS stack on 127.0.0.1 --------------------------------------------------------
# what a TLS server that requires a client certificate answers: TLS 1.3 sends "certificate
# required" after the handshake, TLS 1.2 fails the handshake. A certificate it cannot verify is an
# "unknown CA", or a "decrypt error" when its issuer has the same name as the stack's CA (as any
# CA that `make_certs` writes does) but another key, or a bad certificate on some OpenSSL builds
NO_CERTIFICATE = {"TLSV13_ALERT_CERTIFICATE_REQUIRED", "SSLV3_ALERT_HANDSHAKE_FAILURE"}
UNTRUSTED_CERTIFICATE = {"TLSV1_ALERT_UNKNOWN_CA", "TLSV1_ALERT_DECRYPT_ERROR", "SSLV3_ALERT_BAD_CERTIFICATE"}


def _tls_answer(address: str, ca: str, cert: str | None = None, key: str | None = None) -> str:
    """Open a TLS connection that trusts the CA (and shows `cert`, if given) and wait for the
    server's first word. Returns the TLS alert that refused it, "let in", or what else happened
    (a refused connection or a timeout is not a TLS refusal, and must not pass for one)."""
    host, port = address.removeprefix("tls://").removeprefix("tcp://").rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = False  # as Dask: the cluster's own CA is the identity
    if cert is not None:
        ctx.load_cert_chain(cert, key)
    try:
        with (
            socket.create_connection((host, int(port)), timeout=10) as raw,
            ctx.wrap_socket(raw, server_hostname=host) as tls,
        ):
            # send nothing: bytes the server never reads would turn its alert into a reset. A
            # Dask server speaks first (its handshake), so a client it lets in reads a byte
            return "let in" if tls.recv(1) else "closed without an alert"
    except ssl.SSLError as exc:
        return exc.reason or f"SSLError: {exc}"
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"


@pytest.mark.slow
def test_tls_scheduler_refuses_clients_without_the_certificate(tmp_path):
    from distributed import Client
    from distributed.security import Security

    from infra.stack import StackConfig

    stack = Stack(
        tmp_path / "stack",
        Ports(free_port(), free_port(), free_port()),
        config=StackConfig(dask=True, dask_tls=True, dask_workers=1),
    )
    stack.up()  # makes the certificates: none exist yet
    try:
        address, files = stack.scheduler_address, stack.tls
        assert address == f"tls://127.0.0.1:{stack.ports.dask}" and files.exist()

        # refused: plain TCP, TLS without a certificate, a certificate from another CA
        with pytest.raises(OSError):
            Client(address.replace("tls://", "tcp://"), timeout="5s")
        # the handshake itself must refuse: a timeout or a closed port would not be a refusal
        assert _tls_answer(address, str(files.ca)) in NO_CERTIFICATE
        other = make_certs(tmp_path / "other-ca")
        assert _tls_answer(address, str(files.ca), str(other.cert), str(other.key)) in UNTRUSTED_CERTIFICATE
        stranger = Security(
            tls_ca_file=str(files.ca),
            tls_client_cert=str(other.cert),
            tls_client_key=str(other.key),
            require_encryption=True,
        )
        with pytest.raises(OSError):
            Client(address, security=stranger, timeout="5s")
        # the stack's own certificate is let in by the same probe, and a port with nothing on it
        # is a refused connection, which the checks above would not accept
        assert _tls_answer(address, str(files.ca), str(files.cert), str(files.key)) == "let in"
        assert _tls_answer(f"tls://127.0.0.1:{free_port()}", str(files.ca)).startswith("ConnectionRefusedError")

        # let in: a shell that sourced env.sh connects and runs a task on the stack's worker
        script = (
            "import os; from distributed import Client; "
            "c = Client(os.environ['CLAMP_SCHEDULER_ADDRESS'], timeout='60s'); "
            "print(c.submit(sum, [1, 2, 3]).result(timeout=60)); c.close()"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_DISTRIBUTED__COMM__")}
        ran = subprocess.run(
            [
                "bash",
                "-c",
                'source "$1" && exec "$2" -c "$3"',
                "sh",
                str(stack.state / "env.sh"),
                sys.executable,
                script,
            ],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert ran.returncode == 0, ran.stderr[-3000:]
        assert ran.stdout.strip().splitlines()[-1] == "6"
    finally:
        stack.down()
