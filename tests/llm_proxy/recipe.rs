//! The client recipe `demo --stay` and `serve --chain local` print (issue 8, item 8): its
//! commands, run exactly as printed from the crate root, get the 402 and pay the proxy.

use std::time::Duration;

use crate::demo::recipe::{Target, render};
use crate::demo::stack::{Options, Stack};
use crate::support::*;

/// The command block under the comment line starting with `heading` (up to the next blank line).
fn block(recipe: &str, heading: &str) -> Option<String> {
    let start = recipe.find(heading)?;
    let rest = &recipe[start..];
    let body = rest.split_once('\n')?.1;
    Some(body.split("\n\n").next().unwrap_or(body).to_owned())
}

async fn sh(command: &str) -> (bool, String) {
    let output = tokio::process::Command::new("sh")
        .args(["-c", command])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), output).await.expect("the command finished").unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_08_the_stay_recipe_gets_the_402_and_its_client_pays_as_printed() {
    let config = config("");
    let stack = Stack::start(&config, Options::demo(&config)).await.unwrap();
    let target = Target { proxy: stack.server.url(""), devnet: &stack.devnet, model: "tollgate-sim", first_payer: 3 };
    let recipe = render(&target).await;

    let curl = block(&recipe, "# the 402").expect("a curl for the 402");
    assert!(curl.starts_with(&format!("curl -si {}/v1/chat/completions", stack.server.url(""))), "{recipe}");
    if which_curl().await {
        let (_, answer) = sh(&curl).await;
        assert!(answer.starts_with("HTTP/1.1 402"), "{answer}");
        assert!(answer.to_ascii_lowercase().contains("www-authenticate: payment "), "{answer}");
    }

    // The v2 clients are printed only when the proxy offers v2 sessions; then they pay too.
    if let Some(v2) = block(&recipe, "# the openai SDK paying through mppx: the Tempo guide's client") {
        let (ok, out) = sh(&v2).await;
        assert!(ok && out.contains("simulated model"), "the printed snippet failed:\n{v2}\n{out}");
    }
    if let Some(cli) = block(&recipe, "# the mppx CLI") {
        let home = std::env::temp_dir().join(format!("tollgate-recipe-{}", std::process::id()));
        std::fs::create_dir_all(&home).unwrap();
        let (ok, out) = sh(&format!("HOME={} {cli}", home.display())).await;
        let _ = std::fs::remove_dir_all(&home);
        assert!(ok && out.contains("simulated model"), "the printed CLI command failed:\n{cli}\n{out}");
    }

    // The proxy offers v1 sessions: the v1 client's command pays a streamed completion and
    // closes (the test client exits 0 only once the close is on chain).
    let v1 = block(&recipe, "# the openai SDK paying through mppx's v1 client").expect("the v1 client's command");
    let (ok, out) = sh(&v1).await;
    assert!(ok, "the printed command failed:\n{v1}\n{out}");
    assert!(out.contains(r#""kind":"completion""#) && out.contains(r#""kind":"done""#), "{out}");
}

async fn which_curl() -> bool {
    sh("command -v curl").await.0
}
