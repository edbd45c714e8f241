//! `product-telemetry flush`: deliver what earlier runs left in the spool, now.
//!
//! Also what `capture` starts in the background when its event could not be delivered
//! within its short foreground budget. A remembered backoff is ignored: flushing on
//! demand means "try now".

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use product_telemetry::ProductTelemetry;

use crate::options::GlobalOptions;

#[derive(Debug, Args)]
pub(crate) struct FlushArgs {
    /// The longest to wait for delivery, e.g. `10s`.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub(crate) timeout: Duration,
    /// Print nothing.
    #[arg(long, short)]
    pub(crate) quiet: bool,
}

pub(crate) fn run(global: &GlobalOptions, args: &FlushArgs) -> ExitCode {
    let Some(config) = global.config_with_key() else {
        if !args.quiet {
            eprintln!("error: no project API key: pass --api-key or set PRODUCT_TELEMETRY_API_KEY");
        }
        return ExitCode::from(2);
    };
    // Each attempt may take the whole budget: a timeout then means the endpoint hangs,
    // and the backoff it leads to is remembered for later runs.
    let timeout = args.timeout;
    let telemetry = ProductTelemetry::new(
        config.client_options(move |c| c.honour_remembered_backoff(false).request_timeout(timeout)),
    );
    if !telemetry.is_enabled() {
        if !args.quiet {
            println!("telemetry is {}: nothing to flush", telemetry.consent());
        }
        return ExitCode::SUCCESS;
    }
    let result = telemetry.shutdown(args.timeout);
    let stats = telemetry.stats();
    if !args.quiet {
        println!(
            "delivered {} event(s); {} left in the spool",
            stats.sent, stats.left_in_spool
        );
        if let Err(error) = result {
            println!("not everything was delivered: {error}");
        }
    }
    ExitCode::SUCCESS
}
