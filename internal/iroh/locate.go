package iroh

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

const (
	// ScriptName is the sidecar's entry point inside the sidecar directory.
	ScriptName = "sidecar.mjs"
	// bindingPackage is the npm package the sidecar needs in node_modules.
	bindingPackage = "@number0/iroh"
	// minNodeMajor is the oldest Node.js major version the binding supports.
	minNodeMajor = 20
)

// ErrMissingPrerequisite marks errors about a missing node binary or a
// missing npm install; test with errors.Is.
var ErrMissingPrerequisite = errors.New("iroh sidecar prerequisite missing")

// DefaultDir returns where the sidecar lives: <dir of the agentd
// executable>/../sidecar/iroh when that holds the script, else the first
// sidecar/iroh found walking up from the working directory (a source checkout,
// as in tests). It returns the executable-relative path if neither exists, so
// the error names the place an installed agentd expects.
func DefaultDir() string {
	var exeDir string
	if exe, err := os.Executable(); err == nil {
		if real, err := filepath.EvalSymlinks(exe); err == nil {
			exe = real
		}
		exeDir = filepath.Join(filepath.Dir(exe), "..", "sidecar", "iroh")
		if fileExists(filepath.Join(exeDir, ScriptName)) {
			return filepath.Clean(exeDir)
		}
	}
	if wd, err := os.Getwd(); err == nil {
		for dir := wd; ; {
			cand := filepath.Join(dir, "sidecar", "iroh")
			if fileExists(filepath.Join(cand, ScriptName)) {
				return cand
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return filepath.Clean(exeDir)
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// FindNode resolves the node binary: configured path (a path or a name looked
// up on PATH) or "node" on PATH, and checks its major version.
func FindNode(configured string) (string, error) {
	name := configured
	if name == "" {
		name = "node"
	}
	path, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%w: node (Node.js >= %d) not found (%q): install Node.js %d+ (e.g. `apt-get install nodejs`) or set the node path in the iroh config: %v",
			ErrMissingPrerequisite, minNodeMajor, name, minNodeMajor, err)
	}
	out, err := exec.Command(path, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("%w: %s --version failed: %v", ErrMissingPrerequisite, path, err)
	}
	v := strings.TrimPrefix(strings.TrimSpace(string(out)), "v")
	major, _ := strconv.Atoi(strings.SplitN(v, ".", 2)[0])
	if major < minNodeMajor {
		return "", fmt.Errorf("%w: %s is Node.js %s, the iroh sidecar needs >= %d", ErrMissingPrerequisite, path, v, minNodeMajor)
	}
	return path, nil
}

// CheckDir verifies the sidecar directory holds the script and the installed
// npm package.
func CheckDir(dir string) error {
	if !fileExists(filepath.Join(dir, ScriptName)) {
		return fmt.Errorf("%w: %s not found in %s: point the iroh sidecar dir at agentd's sidecar/iroh directory",
			ErrMissingPrerequisite, ScriptName, dir)
	}
	pkg := filepath.Join(dir, "node_modules", filepath.FromSlash(bindingPackage), "package.json")
	if !fileExists(pkg) {
		return fmt.Errorf("%w: npm package %s is not installed in %s: run `make setup` or `cd %s && npm install --omit=dev`",
			ErrMissingPrerequisite, bindingPackage, dir, dir)
	}
	return nil
}
