//! TCP with TLS: a sensor authenticates with a client certificate or with the token;
//! queries on TCP need credentials too. Certificates are made by `openssl` at test time.

mod common;

use std::path::Path;

use common::*;
use jobwatch_proto::v1::{self as pb, collector_client::CollectorClient};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

fn openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("running openssl (needed for the TLS test): {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `ca.pem`; `server.{pem,key}` for localhost; `client.{pem,key}`.
fn certificates(dir: &Path) {
    const EC: [&str; 5] = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec![
        "req",
        "-x509",
        "-days",
        "1",
        "-subj",
        "/CN=collector test CA",
    ];
    ca.extend(EC);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(dir, &ca);
    for (name, ext) in [
        (
            "server",
            "subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n",
        ),
        (
            "client",
            "subjectAltName=DNS:node-a\nextendedKeyUsage=clientAuth\n",
        ),
    ] {
        let ext_file = format!("{name}.ext");
        std::fs::write(
            dir.join(&ext_file),
            format!("basicConstraints=CA:FALSE\n{ext}"),
        )
        .expect("ext file");
        let (key, csr, pem, subj) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("/CN={name}"),
        );
        let mut req = vec!["req", "-subj", &subj, "-keyout", &key, "-out", &csr];
        req.extend(EC);
        openssl(dir, &req);
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "1",
                "-out",
                &pem,
                "-extfile",
                &ext_file,
            ],
        );
    }
}

#[tokio::test]
async fn tcp_needs_a_certificate_or_the_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_path_buf();
    certificates(&d);
    std::fs::write(d.join("token"), "tcp-token").expect("token");
    let h = Harness::start(&d, |c| {
        c.listen_address = Some(([127, 0, 0, 1], 0).into());
        c.tls_cert = Some(d.join("server.pem"));
        c.tls_key = Some(d.join("server.key"));
        c.tls_client_ca = Some(d.join("ca.pem"));
        c.token_file = Some(d.join("token"));
    })
    .await;
    let addr = h
        .running
        .as_ref()
        .and_then(|r| r.tcp_addr)
        .expect("tcp address");
    let read = |f: &str| std::fs::read(d.join(f)).expect("cert file");
    let connect = |identity: bool| {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read("ca.pem")))
            .domain_name("localhost");
        if identity {
            tls = tls.identity(Identity::from_pem(read("client.pem"), read("client.key")));
        }
        async move {
            let ch = Endpoint::from_shared(format!("https://{addr}"))
                .expect("endpoint")
                .tls_config(tls)
                .expect("client tls")
                .connect()
                .await
                .expect("TLS connect");
            CollectorClient::new(ch)
        }
    };
    let one = |seq| vec![batch("run-1", vec![exec(seq, "/bin/true", None)])];

    // A client certificate is enough.
    let mut with_cert = connect(true).await;
    let acks = report(&mut with_cert, one(1), None)
        .await
        .expect("report with a client certificate");
    assert_eq!(acks[0].seq, 1);
    assert_eq!(
        query(&mut with_cert, pb::QueryEventsRequest::default())
            .await
            .len(),
        1
    );

    // Without one, only the token will do, for reports and queries alike.
    let mut anonymous = connect(false).await;
    let e = report(&mut anonymous, one(2), None)
        .await
        .expect_err("no credentials");
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
    let e = anonymous
        .get_status(pb::CollectorStatusRequest {})
        .await
        .expect_err("query without credentials");
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
    let acks = report(&mut anonymous, one(2), Some("tcp-token"))
        .await
        .expect("report with the token");
    assert_eq!(acks[0].seq, 2);

    let mut local = h.client().await;
    assert_eq!(counter(&mut local, "auth_failures").await, 2);
    assert_eq!(counter(&mut local, "events_stored").await, 2);
    drop((with_cert, anonymous, local));
    h.stop().await;
}

#[tokio::test]
async fn a_certificate_that_does_not_load_stops_the_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key, token) = (
        dir.path().join("cert.pem"),
        dir.path().join("key.pem"),
        dir.path().join("token"),
    );
    std::fs::write(
        &cert,
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
    )
    .expect("write");
    std::fs::write(&key, "not a key\n").expect("write");
    std::fs::write(&token, "t0ken\n").expect("write");
    let config = collector::config::Config {
        db_path: dir.path().join("events.db"),
        socket: dir.path().join("collector.sock"),
        listen_address: Some(([127, 0, 0, 1], 0).into()),
        tls_cert: Some(cert),
        tls_key: Some(key),
        token_file: Some(token),
        ..collector::config::Config::default()
    };
    let e = collector::server::start(config, tokio_util::sync::CancellationToken::new())
        .await
        .expect_err("refused at start");
    assert!(
        e.to_string()
            .starts_with("TLS configuration for TCP 127.0.0.1:0: "),
        "{e}"
    );
    assert!(
        !dir.path().join("collector.sock").exists(),
        "nothing listens"
    );
}
