package gateway
import "github.com/agentd/agentd/internal/session"
var TT = session.TT
var TTDump = session.TTDump
