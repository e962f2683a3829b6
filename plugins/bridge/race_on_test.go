//go:build race

package bridge_test

// raceBuild makes the tests build the test plugin with the race detector
// too, so the plugin side of the control plane is checked as well.
const raceBuild = true
