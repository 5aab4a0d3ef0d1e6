package policy

import "time"

// SetProtectedHeadStart sets how long the protected entries are walked alone, and returns
// what puts it back.
func SetProtectedHeadStart(d time.Duration) func() {
	was := protectedHeadStart
	protectedHeadStart = d
	return func() { protectedHeadStart = was }
}
