//go:build !race

package bridge_test

const raceBuild = false
