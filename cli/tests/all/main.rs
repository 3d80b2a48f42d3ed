//! emsctl's integration tests in one binary (one link instead of one per scenario, one
//! PostgreSQL server for all): a module per scenario, named for what it proves, and the shared
//! helpers in `common`.

mod common;

mod admin_and_records;
mod alerts;
mod auth_and_connection_failures;
mod bad_arguments;
mod completions_and_man;
mod credentials;
mod device_tags;
mod energy_table;
mod expired_command;
mod history_formats;
mod history_progress_on_terminal;
mod login_prompt_hides_the_token;
mod login_refuses_a_bad_token;
mod login_saves_a_private_config;
mod no_wait_and_silent_device;
mod plan_show_apply;
mod planner_set_show_off;
mod schedule_set_show_clear;
mod set_mode_accepted;
mod set_mode_rejected;
mod settings_precedence;
mod stack_env_makes_emsctl_work_as_typed;
mod stack_instances_behind_haproxy;
mod status_shows_directions;
mod status_shows_the_lease;
mod tariff_set_show;
mod tls_with_ca_file;
mod watch_live;
mod watch_reconnects_after_cloud_restart;
