package vault

import "github.com/agentd/agentd/internal/vault/notepath"

// ErrInvalidPath is returned for a path that is not a note inside the
// vault; REST answers 400 invalid_path and nothing is touched.
var ErrInvalidPath = notepath.ErrInvalidPath

// CleanPath checks a client's vault path and returns it in canonical form
// (see notepath.Clean).
func CleanPath(p string) (string, error) { return notepath.Clean(p) }
