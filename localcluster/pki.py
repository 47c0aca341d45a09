"""The local cluster's PKI: one CA, the API server's serving cert, client certs, SA keys.

Generated once per state directory with `cryptography` (ECDSA P-256: fast to
make, accepted by every Kubernetes component) and reused by later starts, so
kubeconfigs and service-account tokens stay valid across restarts. A leaf
certificate close to expiry is renewed; the CA lives ten years.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
LEAF_DAYS = 365
RENEW_BEFORE_DAYS = 30

# The API server answers on loopback under these names (and in-cluster ones, so
# a kubeconfig naming `kubernetes.default.svc` also verifies).
SERVING_DNS = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
SERVING_IPS = ("127.0.0.1", "10.0.0.1")

# Client identities: (file stem, common name = user, organizations = groups).
CLIENTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "admin": ("fovea-admin", ("system:masters",)),
    "controller-manager": ("system:kube-controller-manager", ()),
    "scheduler": ("system:kube-scheduler", ()),
    # One agent serves several nodes, so it cannot be one `system:node:<name>`;
    # it acts as a cluster admin, like a single-machine kubelet would need to.
    "node-agent": ("fovea-node-agent", ("system:masters",)),
    # What the API server shows the node agent's kubelet log endpoint (pods/log).
    "apiserver-kubelet-client": ("kube-apiserver-kubelet-client", ()),
}


@dataclass(frozen=True)
class Pki:
    """Paths of the generated files."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def serving_cert(self) -> Path:
        return self.directory / "apiserver.crt"

    @property
    def serving_key(self) -> Path:
        return self.directory / "apiserver.key"

    @property
    def kubelet_serving_cert(self) -> Path:
        return self.directory / "kubelet.crt"

    @property
    def kubelet_serving_key(self) -> Path:
        return self.directory / "kubelet.key"

    @property
    def sa_key(self) -> Path:
        return self.directory / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.directory / "sa.pub"

    def client_cert(self, who: str) -> Path:
        return self.directory / f"{who}.crt"

    def client_key(self, who: str) -> Path:
        return self.directory / f"{who}.key"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, private: bool) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    tmp.replace(path)


def _still_valid(path: Path) -> bool:
    if not path.exists():
        return False
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return cert.not_valid_after_utc - _now() > dt.timedelta(days=RENEW_BEFORE_DAYS)


def _name(common_name: str, orgs: tuple[str, ...] = ()) -> x509.Name:
    parts = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in orgs]
    parts.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(parts)


def _ensure_ca(pki: Pki) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    if _still_valid(pki.ca_cert) and pki.ca_key.exists():
        cert = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
        key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return cert, key
    key = _new_key()
    name = _name("fovea-models-local-ca")
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write(pki.ca_key, _key_pem(key), private=True)
    _write(pki.ca_cert, cert.public_bytes(serialization.Encoding.PEM), private=False)
    # A new CA invalidates every leaf signed by an old one.
    for leaf in pki.directory.glob("*.crt"):
        if leaf != pki.ca_cert:
            leaf.unlink()
    return cert, key


def _issue(
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    cert_path: Path,
    key_path: Path,
    subject: x509.Name,
    server: bool,
    ips: tuple[str, ...] = SERVING_IPS,
) -> None:
    if _still_valid(cert_path) and key_path.exists() and _has_ips(cert_path, ips):
        return
    ca_cert, ca_key = ca
    key = _new_key()
    now = _now()
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=LEAF_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if server:
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in SERVING_DNS]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    _write(key_path, _key_pem(key), private=True)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), private=False)


def _has_ips(cert_path: Path, ips: tuple[str, ...]) -> bool:
    """Whether the certificate names every address of `ips` (client certificates name none)."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return True
    named = {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
    return set(ips) <= named


def ensure_serving_cert(pki: Pki, stem: str, ips: tuple[str, ...]) -> tuple[Path, Path]:
    """A serving certificate `<stem>.crt` (and key) for the loopback names and `ips` too.

    The container node's kubelet serves on its own address (not loopback), which
    the API server verifies against the cluster CA.
    """
    cert, key = pki.directory / f"{stem}.crt", pki.directory / f"{stem}.key"
    ca = _ensure_ca(pki)
    _issue(ca, cert, key, _name(stem), server=True, ips=(*SERVING_IPS, *ips))
    return cert, key


def _ensure_sa_keys(pki: Pki) -> None:
    if pki.sa_key.exists() and pki.sa_pub.exists():
        return
    key = _new_key()
    pub = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _write(pki.sa_key, _key_pem(key), private=True)
    _write(pki.sa_pub, pub, private=False)


def ensure_pki(directory: Path) -> Pki:
    """Create (or reuse, renewing what expires soon) every key and certificate in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    pki = Pki(directory)
    ca = _ensure_ca(pki)
    _issue(ca, pki.serving_cert, pki.serving_key, _name("kube-apiserver"), server=True)
    _issue(ca, pki.kubelet_serving_cert, pki.kubelet_serving_key, _name("kubelet"), server=True)
    for who, (user, groups) in CLIENTS.items():
        _issue(ca, pki.client_cert(who), pki.client_key(who), _name(user, groups), server=False)
    _ensure_sa_keys(pki)
    return pki
