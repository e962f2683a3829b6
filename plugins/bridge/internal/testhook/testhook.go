// Package testhook holds the SDK's switches for its own tests (the test
// plugin sets them): internal, so no bridge outside the SDK can reach them.
package testhook

import "sync/atomic"

// LoseStateEvents makes the SDK drop every platform state event on its way
// to agentd, as a full host queue would, leaving Health to report the
// state (the supervisor's backstop).
var LoseStateEvents atomic.Bool
