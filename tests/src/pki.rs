//! A throwaway PKI for TLS tests (rcgen): a CA that issues node and
//! client certificates, written as PEM files.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, date_time_ymd,
};

/// A certificate authority.
#[derive(Debug)]
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, as files.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
}

impl Ca {
    /// A new CA named `name`.
    ///
    /// # Panics
    /// When rcgen fails (not expected).
    #[must_use]
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer =
            CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA");
        Self { issuer }
    }

    /// The CA certificate (PEM).
    #[must_use]
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// Writes `bundle` (PEM certificates) to `path` at once, as a Secret
    /// update lands.
    ///
    /// # Panics
    /// When the file cannot be written.
    pub fn write_bundle(path: &Path, bundle: &str) {
        replace(path, bundle);
    }

    /// Writes the CA certificate to `path`.
    ///
    /// # Panics
    /// When the file cannot be written.
    pub fn write(&self, path: &Path) {
        std::fs::write(path, self.issuer.pem()).expect("write CA");
    }

    /// Issues a certificate for `name` valid for `sans` (names or IPs),
    /// for server and client use, written as `<dir>/<file>.crt` and `.key`;
    /// `expired` makes it valid only in 2020.
    ///
    /// # Panics
    /// When rcgen fails or the files cannot be written.
    #[must_use]
    pub fn issue(
        &self,
        dir: &Path,
        file: &str,
        name: &str,
        sans: &[&str],
        expired: bool,
    ) -> Issued {
        let key = KeyPair::generate().expect("key");
        let mut params =
            CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
                .expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        if expired {
            params.not_before = date_time_ymd(2020, 1, 1);
            params.not_after = date_time_ymd(2020, 12, 31);
        }
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        let issued = Issued {
            cert: dir.join(format!("{file}.crt")),
            key: dir.join(format!("{file}.key")),
        };
        // Key first, then certificate, each replaced whole (as a Secret
        // update lands): a reader never sees a torn file.
        replace(&issued.key, &key.serialize_pem());
        replace(&issued.cert, &cert.pem());
        issued
    }
}

fn replace(path: &Path, text: &str) {
    let staged = path.with_extension("staged");
    std::fs::write(&staged, text).expect("write");
    std::fs::rename(&staged, path).expect("rename");
}
