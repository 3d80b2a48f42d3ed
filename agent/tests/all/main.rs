//! The agent's integration tests in one binary (one link instead of one per scenario, one
//! PostgreSQL server for all): a module per scenario, named for what it proves, and the shared
//! bench in `common`.

mod common;

mod auto_brings_grid_to_zero;
mod auto_strategies_hold_on_simulated_days;
mod broken_queue_file_does_not_stop_control;
mod clock_steps_lose_no_packet;
mod faults_latch_error_until_reset;
mod haproxy_spreads_and_fails_over;
mod hung_driver_does_not_stall_the_loop;
mod lease_returns_to_auto_through_the_cloud;
mod manual_discharge_moves_the_battery;
mod metrics_follow_the_cloud_link;
mod metrics_follow_the_running_agent;
mod modbus_tcp;
mod panicking_inverter_driver_is_replaced;
mod probe_names_the_register_map;
mod scan_finds_the_sims_units;
mod schedule_runs_offline_and_survives_restart;
mod silent_device_gives_comm_loss;
mod state_machine_invariants;
mod systemd_notify;
mod telemetry_follows_the_simulated_site;
mod token_file_must_be_the_agents_alone;
mod uplink_black_hole_is_detected;
mod uplink_end_to_end;
mod uplink_over_tls;
mod uplink_refused_packets_are_quarantined;
mod uplink_survives_cloud_outage_and_kill9;
mod uplink_survives_database_outage;
