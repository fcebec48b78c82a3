//! TLS to PostgreSQL: the store connects with rustls when the URL's `sslmode` asks for it, and
//! checks the server's certificate as the mode says.
//!
//! Needs `BATON_TEST_POSTGRES_URL` and `BATON_TEST_POSTGRES_CA`, which `scripts/test.sh` sets:
//! its cluster serves TLS with a certificate its own CA signed for the name `localhost` only.

use baton_store::postgres::PostgresBackend;

/// The database URL and the path of the CA that signed its certificate; `None` when the tests
/// are not given a database (a failure under `CI=true`).
fn database() -> Option<(String, String)> {
    let url = std::env::var("BATON_TEST_POSTGRES_URL").ok().filter(|url| !url.is_empty());
    let ca = std::env::var("BATON_TEST_POSTGRES_CA").ok().filter(|ca| !ca.is_empty());
    match (url, ca) {
        (Some(url), Some(ca)) => Some((url, ca)),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but BATON_TEST_POSTGRES_URL or BATON_TEST_POSTGRES_CA is not set: run the tests through \
                 scripts/test.sh, which starts PostgreSQL with TLS"
            );
            eprintln!("skipped: set BATON_TEST_POSTGRES_URL and BATON_TEST_POSTGRES_CA (scripts/test.sh does)");
            None
        }
    }
}

/// A name only this test's connections carry, to find them among the server's.
fn application_name(test: &str) -> String {
    format!("baton_tls_{test}_{}", std::process::id())
}

/// How many of the server's connections carry `name`, and how many of those use TLS.
fn connections(url: &str, name: &str) -> (i64, i64) {
    let mut admin = postgres::Client::connect(url, postgres::NoTls).expect("connect to BATON_TEST_POSTGRES_URL");
    let row = admin
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE s.ssl) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
             WHERE a.application_name = $1",
            &[&name],
        )
        .expect("read pg_stat_ssl");
    (row.get(0), row.get(1))
}

fn open_error(url: &str) -> String {
    PostgresBackend::open(url).map(|_| ()).expect_err("the connection is refused").to_string()
}

#[test]
fn verify_full_connects_over_tls_to_the_name_in_the_certificate() {
    let Some((url, ca)) = database() else { return };
    let scoped = crate::harness::scratch_schema(&url).replace("@127.0.0.1:", "@localhost:");
    let name = application_name("full");
    let backend =
        PostgresBackend::open(&format!("{scoped}&application_name={name}&sslmode=verify-full&sslrootcert={ca}"))
            .expect("verify-full to localhost with the cluster's CA connects");
    let store = baton_store::Store::new(Box::new(backend), crate::harness::TIMEOUTS);
    // The store works over it (migrations ran; a read answers).
    assert!(store.runners(baton_core::RunnerId(0), 10).expect("a read over TLS").is_empty());
    let (all, tls) = connections(&url, &name);
    assert!(all > 0, "the store holds connections");
    assert_eq!(tls, all, "every connection of the store uses TLS");
}

#[test]
fn a_client_certificate_is_presented_when_the_url_names_one() {
    let Some((url, ca)) = database() else { return };
    let scoped = crate::harness::scratch_schema(&url).replace("@127.0.0.1:", "@localhost:");
    // scripts/postgres.sh puts the client's certificate and key beside the CA.
    let tls = std::path::Path::new(&ca).parent().expect("the CA is in a directory");
    let (cert, key) = (tls.join("client.crt"), tls.join("client.key"));
    let name = application_name("client");
    let _backend = PostgresBackend::open(&format!(
        "{scoped}&application_name={name}&sslmode=verify-full&sslrootcert={ca}&sslcert={}&sslkey={}",
        cert.display(),
        key.display()
    ))
    .expect("connects with a client certificate");
    let mut admin = postgres::Client::connect(&url, postgres::NoTls).expect("connect to BATON_TEST_POSTGRES_URL");
    let subjects: Vec<Option<String>> = admin
        .query(
            "SELECT DISTINCT s.client_dn FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
             WHERE a.application_name = $1",
            &[&name],
        )
        .expect("read pg_stat_ssl")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(subjects, [Some("/CN=baton-test-client".to_string())]);
}

#[test]
fn without_sslmode_the_connections_are_plain() {
    let Some((url, _)) = database() else { return };
    let scoped = crate::harness::scratch_schema(&url);
    let name = application_name("plain");
    let _backend = PostgresBackend::open(&format!("{scoped}&application_name={name}")).expect("connects");
    let (all, tls) = connections(&url, &name);
    assert!(all > 0, "the store holds connections");
    assert_eq!(tls, 0, "no sslmode, no TLS");
}

#[test]
fn verify_full_refuses_a_certificate_for_another_name_and_verify_ca_accepts_it() {
    let Some((url, ca)) = database() else { return };
    let scoped = crate::harness::scratch_schema(&url);
    // The certificate names localhost; the URL says 127.0.0.1.
    let error = open_error(&format!("{scoped}&sslmode=verify-full&sslrootcert={ca}"));
    assert!(error.contains("certificate"), "{error}");
    assert!(error.contains("sslmode=verify-full also checks that it names the host"), "{error}");

    let name = application_name("ca");
    let _backend =
        PostgresBackend::open(&format!("{scoped}&application_name={name}&sslmode=verify-ca&sslrootcert={ca}"))
            .expect("verify-ca checks the chain, not the name");
    let (all, tls) = connections(&url, &name);
    assert!(all > 0 && tls == all, "{tls} of {all} connections use TLS");
}

#[test]
fn require_refuses_a_certificate_no_trusted_root_signed() {
    let Some((url, _)) = database() else { return };
    let scoped = crate::harness::scratch_schema(&url);
    // Without sslrootcert the machine's roots are used, and none of them signed the test CA.
    let error = open_error(&format!("{scoped}&sslmode=require"));
    assert!(error.contains("certificate"), "{error}");
    assert!(error.contains("sslrootcert=/path/to/ca.pem"), "{error}");
    // A CA file that is not the signer is refused too.
    let directory = tempfile::tempdir().expect("temp dir");
    let other_ca = directory.path().join("other.pem");
    std::fs::write(&other_ca, OTHER_CA).expect("write a CA file");
    let error = open_error(&format!("{scoped}&sslmode=require&sslrootcert={}", other_ca.display()));
    assert!(error.contains("certificate"), "{error}");
}

/// A self-signed CA certificate (P-256) that signed nothing the test cluster uses.
const OTHER_CA: &str = "-----BEGIN CERTIFICATE-----
MIIBmDCCAT2gAwIBAgIUHx/aEVYdBd6ErnW1331TVtHI694wCgYIKoZIzj0EAwIw
IDEeMBwGA1UEAwwVQW5vdGhlciBCYXRvbiB0ZXN0IENBMCAXDTI2MTEyNDA2NDgx
OVoYDzIxMjYxMDMxMDY0ODE5WjAgMR4wHAYDVQQDDBVBbm90aGVyIEJhdG9uIHRl
c3QgQ0EwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAASaTzCGSkT2NLGOQ6JPaT0D
MgUsEFLsxIxNsQDkRrPlqnmf5B2/UN2UVmm0iOJv960fAaIQ83bZvOakCyzkqtr/
o1MwUTAdBgNVHQ4EFgQUEUxwl6/NIqvUWR6lf8FRw1Wb1UUwHwYDVR0jBBgwFoAU
EUxwl6/NIqvUWR6lf8FRw1Wb1UUwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQD
AgNJADBGAiEAyNgadhgIPC4oHorhaatffXAOQYYoJsIeMv1whJyYYC0CIQCnc1QM
FO+/pKOXoqqj1/JT9llTs/Tr07DdJSjc+lX7yQ==
-----END CERTIFICATE-----
";
