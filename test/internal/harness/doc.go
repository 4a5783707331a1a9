// Package harness is the process, port, memory and log toolkit every Go test
// suite under test/ shares (faults, cluster, bench), so that starting a
// binary with its output in a log file, stopping it by PID, reading its
// resident set from /proc and finding a free loopback port are written once.
//
// One job per file: process.go (start, signal, stop, wait), ports.go (free
// loopback ports), procfs.go (/proc/PID/status and /proc/PID/stat), tail.go
// (the end of a log), must.go (the same for tests: failures end the test).
package harness
