// Package deploy holds the files for installing Quarry on real machines:
// systemd units, example configuration files, a Prometheus scrape config
// and a Grafana dashboard. Its Go code renders the example configuration
// files from the settings structs, so every setting (with its default and
// help text) is documented and the files cannot drift from the code; its
// tests check the units, the dashboard's metric names and the agent install
// script.
package deploy
