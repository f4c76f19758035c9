//! A bridgekit bridge that sends nothing: for measuring ingest (durable acknowledgement,
//! dispatch and parsing) without the send path.

use bridgekit::{Bridge, BridgeContext, BridgeError, MatrixMessage, async_trait};

struct Ingest;

#[async_trait]
impl Bridge for Ingest {
    async fn handle_message(
        &self,
        _ctx: &BridgeContext,
        _message: MatrixMessage,
    ) -> Result<bridgekit::Sent, BridgeError> {
        Ok(bridgekit::Sent::pending())
    }
}

fn main() -> std::process::ExitCode {
    bridgekit::cli::main(Ingest)
}
