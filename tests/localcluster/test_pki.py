"""The generated PKI: a CA, a serving cert for loopback, client identities, SA keys."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fovea.localcluster.pki import CLIENTS, ensure_pki


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_certificates_chain_to_the_ca_and_name_the_right_identities(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path)
    ca = load(pki.ca_cert)
    serving = load(pki.serving_cert)
    serving.verify_directly_issued_by(ca)
    sans = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in sans.get_values_for_type(x509.IPAddress)
    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    usage = serving.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in usage
    admin = load(pki.client_cert("admin"))
    admin.verify_directly_issued_by(ca)
    orgs = [a.value for a in admin.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    assert orgs == ["system:masters"]
    scheduler = load(pki.client_cert("scheduler"))
    cn = scheduler.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn == "system:kube-scheduler"
    assert set(CLIENTS) >= {"admin", "controller-manager", "scheduler", "node-agent"}
    assert pki.sa_key.read_bytes().startswith(b"-----BEGIN EC PRIVATE KEY")
    assert (pki.ca_key.stat().st_mode & 0o777) == 0o600


def test_a_second_call_reuses_everything(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    ensure_pki(tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert isinstance(load(pki.serving_cert).public_key(), ec.EllipticCurvePublicKey)


def test_a_missing_leaf_is_reissued_from_the_same_ca(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path)
    ca_before = pki.ca_cert.read_bytes()
    pki.client_cert("admin").unlink()
    ensure_pki(tmp_path)
    assert pki.ca_cert.read_bytes() == ca_before
    load(pki.client_cert("admin")).verify_directly_issued_by(load(pki.ca_cert))
