//go:build tools

// Package tools pins promtool, which runs the chart's PrometheusRule unit
// tests (promtool test rules). Built with remove_all_sd: the service
// discovery plugins (cloud SDKs) are half of Prometheus' build and promtool's
// rule tests need none of them.
package tools

import _ "github.com/prometheus/prometheus/cmd/promtool"
