package integrity

import "time"

// SetRacyWindow sets how recently changed a file may be for its verdict
// to be cached, and returns the function that puts it back.
func SetRacyWindow(d time.Duration) func() {
	old := racyWindow
	racyWindow = d
	return func() { racyWindow = old }
}
