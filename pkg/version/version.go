// Package version holds the build's version, set by the linker:
// -ldflags "-X github.com/quarryfleet/quarry/pkg/version.Version=v1.2.3".
package version

// Version is overwritten at link time; it is a variable only for that.
var Version = "dev"
