package session
import ("fmt";"os";"time")
var ttStart time.Time
func TT(s string) { if s == "read" { ttStart = time.Now() }; if os.Getenv("TT") != "" { fmt.Fprintf(os.Stderr, "%8v %s\n", time.Since(ttStart), s) } }
