//! `nosplit agent --config FILE`: the host agent's process. Checks the
//! configuration (every problem at once, exit 2), starts the core (adopting
//! VMs a previous agent left running), the heartbeats on every plane, and
//! the HTTP API, and registers with the engine when the config names one.
//! Stopping the agent (any signal) leaves the VMs running; a
//! new agent adopts them.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use nosplit_agent::core::{Agent, CoreConfig};
use nosplit_agent::heartbeat::{PlaneTarget, Sender};
use nosplit_agent::model::{AgentOps, PlaneInfo};

pub fn agent(config: PathBuf) -> Result<()> {
    let cfg = nosplit_agent::config::load(&config)?;
    let planes: Vec<PlaneInfo> = cfg
        .planes
        .iter()
        .map(|p| PlaneInfo {
            name: p.name.as_str().to_string(),
            address: p.address.to_string(),
        })
        .collect();
    let core = Agent::start(CoreConfig {
        host_name: cfg.host_name.clone(),
        host_id: cfg.host_id,
        leased_socket: cfg.leased_socket.clone(),
        run_dir: cfg.run_dir.clone(),
        bin: cfg.bin.clone(),
        guest_cache: cfg.guest_cache.clone(),
        allow_unleased: cfg.allow_unleased,
        planes,
    })
    .context("starting the agent")?;
    let targets: Vec<PlaneTarget> = cfg
        .planes
        .iter()
        .map(|p| PlaneTarget {
            plane: p.name.as_str().to_string(),
            local: std::net::SocketAddr::from((p.address, 0)),
            engine: p.engine,
        })
        .collect();
    let boot = core.host().agent_boot;
    let _beats = Sender::start(
        cfg.host_id,
        &cfg.host_name,
        &boot,
        &targets,
        cfg.heartbeat_interval,
    );
    let _registrar = cfg.engine.as_ref().and_then(|link| {
        let req = nosplit_agent::register::request(&cfg, nosplit_agent::register::facts());
        nosplit_agent::register::Registrar::start(&link.url, cfg.token.expose(), req)
    });
    let ops: Arc<dyn AgentOps> = core.clone();
    let server = nosplit_agent::http::spawn_server(cfg.listen, cfg.token.clone(), ops)
        .with_context(|| format!("serving the API on {}", cfg.listen))?;
    eprintln!(
        "agent {} (host id {}): API on {}, {} plane(s), boot {boot}",
        cfg.host_name,
        cfg.host_id,
        server.local_addr(),
        targets.len()
    );
    server.wait().context("the API server stopped")?;
    Ok(())
}
