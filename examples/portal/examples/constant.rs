//! The baseline of the portal's load figures (`examples/portal/load/`): an axum server whose only
//! route answers a constant, on the same runtime as the portal (`#[tokio::main]`: multi-threaded,
//! one worker per core) and the same `axum::serve`.
//!
//! `cargo run --release -p portal --example constant -- 127.0.0.1:8081`

use axum::Router;
use axum::routing::get;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8081".to_owned());
    let app = Router::new().route("/", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("constant: http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
