//! TLS configuration for both sides: the main listener's certificate and key (`serve --tls-cert/--tls-key`) and the
//! roots outbound `wss://` clients trust (the system's, plus `serve --ca-file`).
//!
//! Everything here uses rustls' ring provider explicitly, so nothing depends on a process-wide default provider being
//! installed, and nothing panics when more than one provider is compiled into the binary.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, anyhow, bail};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject as _};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// The one application protocol offered: WebSocket upgrades ride on HTTP/1.1 (axum serves no HTTP/2 here).
pub const HTTP_1_1: &[u8] = b"http/1.1";

/// The crypto provider for every config made here: ring, named explicitly rather than taken from the process default.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server's TLS config from a PEM certificate chain (leaf first) and a PEM private key (PKCS#8, PKCS#1 or SEC1).
///
/// Fails, naming the file, when the chain holds no certificate, the key file holds no private key, either is not
/// valid PEM, or the key does not belong to the leaf certificate. Offers ALPN `http/1.1`.
pub fn server_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<ServerConfig>> {
    let chain = read_certs(cert)?;
    if chain.is_empty() {
        bail!("no certificate in {} (expected a PEM `BEGIN CERTIFICATE` block)", cert.display());
    }
    let key_pem = std::fs::read(key).with_context(|| format!("reading the private key {}", key.display()))?;
    let key_der = match PrivateKeyDer::from_pem_slice(&key_pem) {
        Ok(key_der) => key_der,
        Err(pem::Error::NoItemsFound) => bail!(
            "no private key in {} (expected a PEM `PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY` block)",
            key.display()
        ),
        Err(err) => return Err(anyhow!(err).context(format!("{} is not valid PEM", key.display()))),
    };
    // `with_single_cert` loads the key and checks it against the leaf (`CertifiedKey::keys_match`).
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("the ring provider supports none of rustls' default TLS versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|err| match err {
            rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                anyhow!("the private key in {} does not match the certificate in {}", key.display(), cert.display())
            }
            rustls::Error::InvalidCertificate(err) => {
                anyhow!("the first certificate in {} cannot be used: {err}", cert.display())
            }
            err => anyhow!("the private key in {} cannot be used: {err}", key.display()),
        })?;
    config.alpn_protocols = vec![HTTP_1_1.to_vec()];
    Ok(Arc::new(config))
}

/// The config for outbound `wss://` clients: the system's root certificates plus every certificate in `ca_file`.
///
/// Unreadable system certificates are logged and skipped; when the system store yields none at all, the bundled
/// webpki-roots (Mozilla) set is trusted instead, with a warning. A `ca_file` without a certificate is an error.
pub fn client_config(ca_file: Option<&Path>) -> anyhow::Result<Arc<ClientConfig>> {
    let mut roots = system_roots(rustls_native_certs::load_native_certs());
    if let Some(path) = ca_file {
        let certs = read_certs(path)?;
        if certs.is_empty() {
            bail!("no certificate in {} (expected a PEM `BEGIN CERTIFICATE` block)", path.display());
        }
        for (n, cert) in certs.into_iter().enumerate() {
            roots.add(cert).with_context(|| {
                format!("certificate {} in {} cannot be used as a trusted root", n + 1, path.display())
            })?;
        }
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("the ring provider supports none of rustls' default TLS versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![HTTP_1_1.to_vec()];
    Ok(Arc::new(config))
}

/// The roots from the system store's load result, or webpki-roots when it yielded none usable.
fn system_roots(found: rustls_native_certs::CertificateResult) -> RootCertStore {
    for err in &found.errors {
        tracing::warn!("loading the system's root certificates: {err}");
    }
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    if ignored > 0 {
        tracing::warn!("skipped {ignored} of the system's root certificates that rustls cannot use");
    }
    if added == 0 {
        tracing::warn!("the system has no usable root certificates; trusting the bundled webpki-roots instead");
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    } else {
        tracing::debug!("trusting {added} root certificates from the system store");
    }
    roots
}

/// Every certificate in a PEM file, in order (other PEM blocks are skipped).
fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).with_context(|| format!("reading the certificates {}", path.display()))?;
    CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{} is not valid PEM", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::path::PathBuf;

    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};

    /// Test certificates and keys, written as PEM files into a temporary directory.
    struct Pki {
        dir: tempfile::TempDir,
        /// The test CA's certificate.
        ca: PathBuf,
        /// A certificate for `localhost` and 127.0.0.1 signed by the test CA, and its key.
        cert: PathBuf,
        key: PathBuf,
        /// A key that belongs to no certificate here.
        bad_key: PathBuf,
        /// The test CA's issuer, to sign more certificates.
        issuer: CertifiedIssuer<'static, KeyPair>,
    }

    impl Pki {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
            ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            ca_params.distinguished_name.push(DnType::CommonName, "wasmsock test CA");
            ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            let issuer = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
            let server_key = KeyPair::generate().unwrap();
            let server_cert = Self::server_params().signed_by(&server_key, &issuer).unwrap();
            let bad_key = KeyPair::generate().unwrap();
            let write = |name: &str, contents: &str| {
                let path = dir.path().join(name);
                std::fs::write(&path, contents).unwrap();
                path
            };
            Self {
                ca: write("ca.pem", &issuer.pem()),
                cert: write("server.pem", &server_cert.pem()),
                key: write("server.key", &server_key.serialize_pem()),
                bad_key: write("bad.key", &bad_key.serialize_pem()),
                issuer,
                dir,
            }
        }

        fn server_params() -> CertificateParams {
            let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
            // Not `CN=localhost`: Debian's ssl-cert-snakeoil.pem in /etc/ssl/certs has that subject, so a self-signed
            // `CN=localhost` would be checked against it and fail with a signature-algorithm error, not UnknownIssuer.
            params.distinguished_name.push(DnType::CommonName, "wasmsock test server");
            params
        }

        fn write(&self, name: &str, contents: &str) -> PathBuf {
            let path = self.dir.path().join(name);
            std::fs::write(&path, contents).unwrap();
            path
        }
    }

    fn init_tracing() {
        let _ = tracing_subscriber::fmt().with_env_filter("debug").with_test_writer().try_init();
    }

    #[test]
    fn a_key_file_without_a_key_is_named() {
        let pki = Pki::new();
        let err = server_config(&pki.cert, &pki.cert).unwrap_err();
        assert!(err.to_string().starts_with(&format!("no private key in {}", pki.cert.display())), "{err:#}");
    }

    #[test]
    fn a_cert_file_without_certs_is_named() {
        let pki = Pki::new();
        let err = server_config(&pki.key, &pki.key).unwrap_err();
        assert!(err.to_string().starts_with(&format!("no certificate in {}", pki.key.display())), "{err:#}");
        let empty = pki.write("empty.pem", "");
        let err = client_config(Some(&empty)).unwrap_err();
        assert!(err.to_string().starts_with(&format!("no certificate in {}", empty.display())), "{err:#}");
    }

    #[test]
    fn a_key_not_matching_the_cert_is_named() {
        let pki = Pki::new();
        let err = server_config(&pki.cert, &pki.bad_key).unwrap_err();
        let expected = format!(
            "the private key in {} does not match the certificate in {}",
            pki.bad_key.display(),
            pki.cert.display()
        );
        assert_eq!(err.to_string(), expected);
    }

    #[test]
    fn broken_pem_and_missing_files_are_named() {
        let pki = Pki::new();
        let broken = pki.write("broken.pem", "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n");
        let err = server_config(&broken, &pki.key).unwrap_err();
        assert!(err.to_string().starts_with(&format!("{} is not valid PEM", broken.display())), "{err:#}");
        let missing = pki.dir.path().join("missing.key");
        let err = server_config(&pki.cert, &missing).unwrap_err();
        assert!(err.to_string().starts_with(&format!("reading the private key {}", missing.display())), "{err:#}");
    }

    #[test]
    fn pkcs1_and_sec1_keys_are_accepted() {
        let pki = Pki::new();
        for (name, pkcs8, other_encoding, alg) in [
            ("ec", EC_PKCS8, EC_SEC1, &rcgen::PKCS_ECDSA_P256_SHA256),
            ("rsa", RSA_PKCS8, RSA_PKCS1, &rcgen::PKCS_RSA_SHA256),
        ] {
            let key = KeyPair::from_pkcs8_pem_and_sign_algo(pkcs8, alg).unwrap();
            let cert = Pki::server_params().signed_by(&key, &pki.issuer).unwrap();
            let cert = pki.write(&format!("{name}.pem"), &cert.pem());
            let key = pki.write(&format!("{name}.key"), other_encoding);
            let config = server_config(&cert, &key);
            assert!(config.is_ok(), "{name}: {:#}", config.unwrap_err());
        }
    }

    #[test]
    fn a_chain_of_leaf_and_ca_loads_and_offers_http_1_1() {
        let pki = Pki::new();
        let key = KeyPair::generate().unwrap();
        let cert = Pki::server_params().signed_by(&key, &pki.issuer).unwrap();
        let chain = pki.write("chain.pem", &format!("{}{}", cert.pem(), pki.issuer.pem()));
        let key = pki.write("chain.key", &key.serialize_pem());
        let config = server_config(&chain, &key).unwrap();
        assert_eq!(config.alpn_protocols, vec![HTTP_1_1.to_vec()]);
    }

    #[test]
    fn no_process_default_provider_is_needed_or_installed() {
        let pki = Pki::new();
        let server = server_config(&pki.cert, &pki.key).unwrap();
        let client = client_config(Some(&pki.ca)).unwrap();
        assert!(rustls::crypto::CryptoProvider::get_default().is_none());
        let ring = rustls::crypto::ring::default_provider();
        assert_eq!(server.crypto_provider().cipher_suites, ring.cipher_suites);
        assert_eq!(client.crypto_provider().cipher_suites, ring.cipher_suites);
    }

    #[test]
    fn an_empty_system_store_falls_back_to_webpki_roots() {
        let roots = system_roots(rustls_native_certs::CertificateResult::default());
        assert_eq!(roots.len(), webpki_roots::TLS_SERVER_ROOTS.len());
    }

    #[test]
    fn the_system_store_is_used_whole_when_it_has_roots() {
        init_tracing();
        let found = rustls_native_certs::load_native_certs();
        let (loaded, errors) = (found.certs.len(), found.errors.len());
        tracing::info!("the system store has {loaded} certificates ({errors} errors)");
        let roots = system_roots(found);
        assert!(!roots.is_empty());
        if loaded > 0 {
            assert!(roots.len() <= loaded, "{} roots from {loaded} system certificates", roots.len());
        }
    }

    // Throwaway keys made with openssl for the key-encoding test: the same key in PKCS#8 and in its legacy encoding.
    const EC_SEC1: &str = "\
-----BEGIN EC PRIVATE KEY-----\n\
MHcCAQEEIGsw5gj0lYwi5fXpdS822+aqPLNm9qPg/lQG7Ek+aGUVoAoGCCqGSM49\n\
AwEHoUQDQgAEC2z4Yk5YKbaA9MInfTOUmB544ASNk5EOZbaSaAKI/90Q508iePJJ\n\
etNTPbtgI7xx8JcQM0izQHgpGfIuPTstoA==\n\
-----END EC PRIVATE KEY-----\n\
";
    const EC_PKCS8: &str = "\
-----BEGIN PRIVATE KEY-----\n\
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgazDmCPSVjCLl9el1\n\
Lzbb5qo8s2b2o+D+VAbsST5oZRWhRANCAAQLbPhiTlgptoD0wid9M5SYHnjgBI2T\n\
kQ5ltpJoAoj/3RDnTyJ48kl601M9u2AjvHHwlxAzSLNAeCkZ8i49Oy2g\n\
-----END PRIVATE KEY-----\n\
";
    const RSA_PKCS1: &str = "\
-----BEGIN RSA PRIVATE KEY-----\n\
MIIEowIBAAKCAQEArO9MoBWQ8eM8yfBGO5A/3gnfk3LUJ+jTOJyDx/AkKqF1w6t5\n\
iJUTR8l+HMEhKKTk0je32pL/MsxuAmKD1165poar70hWq3eEooA3AnqLQTAEVt3c\n\
3CdKpY8bawZDwWN1dqhExUrW9/AeYwKSaAIfLdNc5owzGw2EJu0ZofNQwBEF4aL2\n\
h7jdwuG57naqHCzh/xptY39T02BXchemX0qNsXREQyJtHM5JEnXQhsghU6hYAnfp\n\
s7PbVjwxKY8+XM5Ud4BwTGto/lcQERPazR4DQI0Psy6NFRu2Zm3FJIJnJOyZR3tk\n\
fAQvoomDRYSf4zwbXS5gvysQhJ8GqS6NCFWfyQIDAQABAoIBACiGPRkIZLpiKyUR\n\
MowTrfu8qZE2Z+PgSdrqxnDMY9U/l8aeALFSab25SF25nikVlu9yEhnct4OyZxcU\n\
+ds2vd95kIHWnES7EbA4xmtExywj8ehfPjmy1Wm9gsnOIoOHaIfBP7hR5NUeBiji\n\
eed4k9DbxlnaQcGVpcGvbwHF8EbJc6EMZuzGp6EzMp/tYVKvmCHgRlmCdSc81Wc3\n\
zpWTLWHcxXp/OkpuXg3Ul7DA4faNt9X1l2KKy67FFVIsS3CH+yqPMMUfkdRFn0Z+\n\
2KmwelB6fRD4kcsHzGj9ymShQSBJswHZr6NcfWLr/l7jR29N6M7+aY4k1B5Ckjgw\n\
vuYpR5cCgYEA36Z2zwUAtku427BMNbZvffuz/bhPTNTOsqlNmOsV7tGl7wACOMfv\n\
nX/EFU2p6Bw4FIMk4fCTB3vvJqFWwyFZZvmEUb3TkX+6Zr/B+V1b/ACy2DiFiGuc\n\
5t06j3CB8D9pq4SzroqMlzLESookgx3X6j5RqGXRn5m1NY31RBT+busCgYEAxfLk\n\
vj+1BZqijJgY2P77mHKC7cJtjSExAkpU9BXJK6WAlNWyO1JZn7Fa6rd8xuYltBAO\n\
tINbREL4zQjU0DLwpQExIX5xc/bfvxxkfUUILmxWgt35YHvT+98k3iHCRmm1+23O\n\
Aw4T+aD/QE1Da0QKIjhBGjBi5YbcTn9VEkKGhxsCgYEAi+KThzKq2lqMWiRv1lyw\n\
aY0obDZ+qyCj1A2e8ll/02sfrVhFC3zKe6lxXJ3B+uLDlNjeFc+iNtkmoPPiz5Op\n\
VoYUZAgmL2hDj4a67ZyeLwXE1warRsOAVMnkmdkV/M2860HKHQ6dluhy6+hxo+zj\n\
oqit7HUa4weB1uhekuHKrlcCgYAE/V5uvURe48r9KEhYD/VfnmNWgvQn/pIxsJX7\n\
oSD1DLL1DX30qNrBf8L+76khimOg6la0jisayWVkJbjXlrEiN6l5YqqRdcOmGZ0e\n\
20KdiPWVTuseV4C8dJ+FSeyPwdJoiBgNU6mFPV2xzUDJz2lB+5EIi/eyOXgMMoF+\n\
eFbTyQKBgDkC7UZmSTB4bn2PU7oAlcULjeDl5QoRtnmT7I1wuSJFhqjxZkkKzRMU\n\
bPUxw24q7NRuLv2m5tBgGdJk3FVQA3NUX6E8StsYmMJiDATGRmP/afWSIYY+UFSj\n\
S0yPBTdxTKiIbdj0DMsEelzK3wxD51HoYCHv93680ocx/QwSc9d7\n\
-----END RSA PRIVATE KEY-----\n\
";
    const RSA_PKCS8: &str = "\
-----BEGIN PRIVATE KEY-----\n\
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCs70ygFZDx4zzJ\n\
8EY7kD/eCd+TctQn6NM4nIPH8CQqoXXDq3mIlRNHyX4cwSEopOTSN7fakv8yzG4C\n\
YoPXXrmmhqvvSFard4SigDcCeotBMARW3dzcJ0qljxtrBkPBY3V2qETFStb38B5j\n\
ApJoAh8t01zmjDMbDYQm7Rmh81DAEQXhovaHuN3C4bnudqocLOH/Gm1jf1PTYFdy\n\
F6ZfSo2xdERDIm0czkkSddCGyCFTqFgCd+mzs9tWPDEpjz5czlR3gHBMa2j+VxAR\n\
E9rNHgNAjQ+zLo0VG7ZmbcUkgmck7JlHe2R8BC+iiYNFhJ/jPBtdLmC/KxCEnwap\n\
Lo0IVZ/JAgMBAAECggEAKIY9GQhkumIrJREyjBOt+7ypkTZn4+BJ2urGcMxj1T+X\n\
xp4AsVJpvblIXbmeKRWW73ISGdy3g7JnFxT52za933mQgdacRLsRsDjGa0THLCPx\n\
6F8+ObLVab2Cyc4ig4doh8E/uFHk1R4GKOJ553iT0NvGWdpBwZWlwa9vAcXwRslz\n\
oQxm7ManoTMyn+1hUq+YIeBGWYJ1JzzVZzfOlZMtYdzFen86Sm5eDdSXsMDh9o23\n\
1fWXYorLrsUVUixLcIf7Ko8wxR+R1EWfRn7YqbB6UHp9EPiRywfMaP3KZKFBIEmz\n\
Admvo1x9Yuv+XuNHb03ozv5pjiTUHkKSODC+5ilHlwKBgQDfpnbPBQC2S7jbsEw1\n\
tm99+7P9uE9M1M6yqU2Y6xXu0aXvAAI4x++df8QVTanoHDgUgyTh8JMHe+8moVbD\n\
IVlm+YRRvdORf7pmv8H5XVv8ALLYOIWIa5zm3TqPcIHwP2mrhLOuioyXMsRKiiSD\n\
HdfqPlGoZdGfmbU1jfVEFP5u6wKBgQDF8uS+P7UFmqKMmBjY/vuYcoLtwm2NITEC\n\
SlT0FckrpYCU1bI7UlmfsVrqt3zG5iW0EA60g1tEQvjNCNTQMvClATEhfnFz9t+/\n\
HGR9RQgubFaC3flge9P73yTeIcJGabX7bc4DDhP5oP9ATUNrRAoiOEEaMGLlhtxO\n\
f1USQoaHGwKBgQCL4pOHMqraWoxaJG/WXLBpjShsNn6rIKPUDZ7yWX/Tax+tWEUL\n\
fMp7qXFcncH64sOU2N4Vz6I22Sag8+LPk6lWhhRkCCYvaEOPhrrtnJ4vBcTXBqtG\n\
w4BUyeSZ2RX8zbzrQcodDp2W6HLr6HGj7OOiqK3sdRrjB4HW6F6S4cquVwKBgAT9\n\
Xm69RF7jyv0oSFgP9V+eY1aC9Cf+kjGwlfuhIPUMsvUNffSo2sF/wv7vqSGKY6Dq\n\
VrSOKxrJZWQluNeWsSI3qXliqpF1w6YZnR7bQp2I9ZVO6x5XgLx0n4VJ7I/B0miI\n\
GA1TqYU9XbHNQMnPaUH7kQiL97I5eAwygX54VtPJAoGAOQLtRmZJMHhufY9TugCV\n\
xQuN4OXlChG2eZPsjXC5IkWGqPFmSQrNExRs9THDbirs1G4u/abm0GAZ0mTcVVAD\n\
c1RfoTxK2xiYwmIMBMZGY/9p9ZIhhj5QVKNLTI8FN3FMqIht2PQMywR6XMrfDEPn\n\
UehgIe/3frzShzH9DBJz13s=\n\
-----END PRIVATE KEY-----\n\
";
}
