// Package report holds what a benchmark run measured and turns it into
// numbers people read: the result types the in-guest runner fills and
// the host driver stores (Results, Run, Footprint), the statistics
// (percentiles, rates, loss, CPU per echo, medians over rounds), the
// Markdown table with ratios against each peer, and the PNG chart of
// echoes per second by payload size and server.
package report
