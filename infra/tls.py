"""Certificates for Dask over TLS: a private CA and one certificate it signs, for the scheduler,
the workers and the clients (Dask authenticates both ends of every connection against the CA).

    python -m infra.stack certs [--host 10.0.0.5]      # then: up --dask --dask-tls

Only the CA certificate, the certificate and its key are kept; the CA's own key is dropped
after signing, so a stolen state folder cannot mint new identities. Regenerate to rotate.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from clamp.io import atomic_path, write_bytes_atomic

DAYS = 365


class TlsFiles(NamedTuple):
    """The three PEM files of a TLS folder, as the `--tls-*` options of `dask` take them."""

    ca: Path
    cert: Path
    key: Path

    @classmethod
    def under(cls, folder: Path) -> TlsFiles:
        return cls(folder / "ca.pem", folder / "dask.pem", folder / "dask-key.pem")

    def exist(self) -> bool:
        return all(p.is_file() for p in self)

    def dask_args(self) -> list[str]:
        """The `dask scheduler` / `dask worker` options that use these files."""
        return ["--tls-ca-file", str(self.ca), "--tls-cert", str(self.cert), "--tls-key", str(self.key)]

    def dask_env(self) -> dict[str, str]:
        """Dask config as environment variables: every role (client, scheduler, worker) uses the
        certificate, and plain TCP is refused, so a client or a LocalCluster started from this
        environment talks TLS too."""
        env = {
            "DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION": "True",
            "DASK_DISTRIBUTED__COMM__TLS__CA_FILE": str(self.ca),
        }
        for role in ("CLIENT", "SCHEDULER", "WORKER"):
            env[f"DASK_DISTRIBUTED__COMM__TLS__{role}__CERT"] = str(self.cert)
            env[f"DASK_DISTRIBUTED__COMM__TLS__{role}__KEY"] = str(self.key)
        return env


def _write_private(data: bytes, path: Path) -> None:
    # the key is readable by its owner only, from the first byte written
    with atomic_path(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)


def make_certs(folder: str | Path, hosts: Iterable[str] = (), days: int = DAYS) -> TlsFiles:
    """Write a new CA and a certificate/key it signs into `folder`; return their paths.

    `hosts` (IP addresses or names) go into the certificate's subject alternative names with
    127.0.0.1 and localhost. Dask does not check host names (it trusts the cluster's CA), but
    other TLS tools that read these files may.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    files = TlsFiles.under(Path(folder))
    now = dt.datetime.now(dt.UTC)
    not_before, not_after = now - dt.timedelta(minutes=5), now + dt.timedelta(days=days)  # 5 min: clock skew

    # EC P-256 keys: as strong as RSA-3072 and generated in milliseconds
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "clamp-pipeline dask CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )

    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(["127.0.0.1", "localhost", *hosts]):  # ordered, no duplicates
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "clamp-pipeline dask")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        # one certificate for every role: it serves (scheduler, workers) and connects (all of them)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    _write_private(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        files.key,
    )
    write_bytes_atomic(cert.public_bytes(serialization.Encoding.PEM), files.cert)
    write_bytes_atomic(ca_cert.public_bytes(serialization.Encoding.PEM), files.ca)
    return files
