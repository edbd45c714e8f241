//! A simulated agent session: a few tasks, each planned and executed step by step,
//! emitting the reference events as a real agent SDK would. Deterministic, so every
//! run tells the same story.

use std::collections::BTreeMap;

use product_telemetry::ProductTelemetry;
use serde_json::Value;

use crate::events::{
    ExecutionAgentUsage, LlmToolUsage, PlanV2Build, PlanV2StepExecution, PortiaFunctionCall,
    ToolCall,
};

/// One kind of plan step: what it is called, the tool it uses, the model it asks.
struct Step {
    kind: &'static str,
    tool: Option<&'static str>,
    model: Option<&'static str>,
}

const fn step(kind: &'static str, tool: Option<&'static str>, model: Option<&'static str>) -> Step {
    Step { kind, tool, model }
}

struct Task {
    prompt: &'static str,
    steps: &'static [Step],
    /// The step (by index) that fails once and is retried, if any.
    flaky: Option<usize>,
}

const TASKS: &[Task] = &[
    Task {
        prompt: "Summarise yesterday's open support tickets",
        steps: &[
            step("tool_step", Some("ticket_search"), None),
            step("llm_step", None, Some("gpt-4o-mini")),
            step("tool_step", Some("slack_post"), None),
        ],
        flaky: None,
    },
    Task {
        prompt: "Find the three cheapest flights to Lisbon next Friday",
        steps: &[
            step("tool_step", Some("flight_search"), None),
            step("llm_step", None, Some("claude-3-5-sonnet")),
            step("tool_step", Some("currency_convert"), None),
            step("llm_step", None, Some("gpt-4o-mini")),
        ],
        flaky: Some(0),
    },
    Task {
        prompt: "Draft release notes from the merged pull requests",
        steps: &[
            step("tool_step", Some("github_list_prs"), None),
            step("llm_step", None, Some("gpt-4o")),
            step("clarification_step", None, None),
            step("llm_step", None, Some("gpt-4o")),
            step("tool_step", Some("file_write"), None),
        ],
        flaky: None,
    },
];

/// Runs the session, printing an agent-style log.
pub fn run(telemetry: &ProductTelemetry) {
    for (n, task) in TASKS.iter().enumerate() {
        println!("  task {}: {}", n + 1, task.prompt);
        telemetry.capture(PortiaFunctionCall {
            function_name: "portia_run".into(),
            function_call_details: BTreeMap::from([
                ("has_plan".into(), Value::from(false)),
                ("end_user_provided".into(), Value::from(true)),
            ]),
        });
        let mut counts: BTreeMap<String, u32> = BTreeMap::new();
        for s in task.steps {
            *counts.entry(s.kind.to_string()).or_default() += 1;
        }
        telemetry.capture(PlanV2Build {
            plan_length: task.steps.len() as u32,
            step_type_counts: counts,
        });
        println!("    planned {} steps", task.steps.len());
        for (i, s) in task.steps.iter().enumerate() {
            let attempts = if task.flaky == Some(i) { 2 } else { 1 };
            for attempt in 1..=attempts {
                let success = attempt == attempts;
                run_step(telemetry, s, success);
                let what = s.tool.or(s.model).unwrap_or("ask the user");
                let mark = if success { "ok" } else { "failed, retrying" };
                println!("    step {} {:<18} {:<20} {mark}", i + 1, s.kind, what);
            }
        }
    }
}

/// The events one executed step emits.
fn run_step(telemetry: &ProductTelemetry, s: &Step, success: bool) {
    let tool_id = s.tool.map(str::to_string);
    let model = s.model.map(str::to_string);
    telemetry.capture(ExecutionAgentUsage {
        agent_type: if s.model.is_some() {
            "llm_agent"
        } else {
            "default_agent"
        }
        .into(),
        model: model.clone(),
        sync: true,
        tool_id: tool_id.clone(),
    });
    if s.tool.is_some() {
        telemetry.capture(ToolCall {
            tool_id: tool_id.clone(),
        });
    }
    if s.model.is_some() {
        telemetry.capture(LlmToolUsage { model, sync: false });
    }
    telemetry.capture(PlanV2StepExecution {
        step_type: s.kind.into(),
        success,
        tool_id,
    });
}
