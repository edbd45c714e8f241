//! The six events of the reference SDK, as plain `#[derive(Serialize)]` structs: each
//! struct's fields are its properties, and `Event::name` gives the event's name.
//!
//! They live in this example, not in the library: they are one application's events.

use std::collections::BTreeMap;

use product_telemetry::Event;
use serde::Serialize;
use serde_json::Value;

/// A call into one of the SDK's public functions.
#[derive(Debug, Serialize)]
pub struct PortiaFunctionCall {
    pub function_name: String,
    pub function_call_details: BTreeMap<String, Value>,
}

/// A tool invoked by an agent.
#[derive(Debug, Serialize)]
pub struct ToolCall {
    pub tool_id: Option<String>,
}

/// One step of a plan executed.
#[derive(Debug, Serialize)]
pub struct PlanV2StepExecution {
    pub step_type: String,
    pub success: bool,
    pub tool_id: Option<String>,
}

/// A plan built.
#[derive(Debug, Serialize)]
pub struct PlanV2Build {
    pub plan_length: u32,
    pub step_type_counts: BTreeMap<String, u32>,
}

/// A language model used as a tool.
#[derive(Debug, Serialize)]
pub struct LlmToolUsage {
    pub model: Option<String>,
    pub sync: bool,
}

/// An execution agent run.
#[derive(Debug, Serialize)]
pub struct ExecutionAgentUsage {
    pub agent_type: String,
    pub model: Option<String>,
    pub sync: bool,
    pub tool_id: Option<String>,
}

macro_rules! named {
    ($($ty:ty => $name:literal),* $(,)?) => {
        $(impl Event for $ty {
            fn name(&self) -> &str {
                $name
            }
        })*
    };
}

named! {
    PortiaFunctionCall => "portia_function_call",
    ToolCall => "tool_call",
    PlanV2StepExecution => "plan_v2_step_execution",
    PlanV2Build => "plan_v2_build",
    LlmToolUsage => "llm_tool_usage",
    ExecutionAgentUsage => "execution_agent_usage",
}
