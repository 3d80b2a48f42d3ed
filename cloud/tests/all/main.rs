//! The integration tests of ems-cloud, one binary: each module is one scenario (a former test
//! file), run against a real server, a real PostgreSQL/TimescaleDB and real sockets.

#[macro_use]
mod common;

mod ack_after_commit;
mod aggregate_matches_raw;
mod alerts_after_disconnect;
mod alerts_email;
mod alerts_offline_webhook;
mod alerts_queue_bounded;
mod alerts_rest;
mod alerts_sinks;
mod alerts_soc_hysteresis;
mod alerts_webhook_retry;
mod auth_failures;
mod auth_flood;
mod budgets_and_backpressure;
mod cli_admin;
mod command_lifecycle;
mod compression_and_retention;
mod dashboard_browser;
mod dashboard_serving;
mod database_over_tls;
mod device_access;
mod energy_accounting;
mod events_derived;
mod extreme_values_keep_history_working;
mod flush_when_idle;
mod forged_notices;
mod grafana_dashboards;
mod history_buckets;
mod history_from_a_replica;
mod hostile_audit;
mod hostile_history_queries;
mod hostile_schedules;
mod hostile_support;
mod hostile_tags_tokens_rules;
mod hostile_tariffs;
mod hot_path_queries_are_bounded;
mod ingest_and_resend;
mod keepalive_and_replacement;
mod live_feed;
mod malformed_frames;
mod metrics_scrape;
mod migrations_from_empty;
mod planner_forecast;
mod planner_plan;
mod planner_replan;
mod planner_tariff;
mod poison_packet_isolated;
mod scoped_tokens;
mod storage_choice_at_start;
mod tag_scoped_tokens;
mod tls;
mod token_lifecycle;
mod two_instances;
