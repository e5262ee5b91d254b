package dlm

// BreakSession closes a session's connection under it, as a network
// failure or a crash would: the server ends the session, and the
// keep-alive finds it gone.
func BreakSession(s *Session) { _ = s.p.conn.Close() }
