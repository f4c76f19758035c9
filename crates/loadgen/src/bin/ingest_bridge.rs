//! A bridgekit bridge that sends nothing: for measuring ingest (durable acknowledgement,
//! dispatch and parsing) without the send path.

use bridgekit::ruma::events::AnyTimelineEvent;
use bridgekit::{Bridge, BridgeContext, BridgeError, async_trait};

struct Ingest;

#[async_trait]
impl Bridge for Ingest {
    async fn handle_event(
        &self,
        _ctx: &BridgeContext,
        _event: AnyTimelineEvent,
    ) -> Result<(), BridgeError> {
        Ok(())
    }
}

fn main() -> std::process::ExitCode {
    bridgekit::cli::main(Ingest)
}
