package policies

import (
	"strings"
	"testing"
)

// TestCheckCronValues: a schedule of the right shape with values the
// controller's parser refuses is refused by validation already.
func TestCheckCronValues(t *testing.T) {
	for _, tc := range []struct {
		schedule, want string
	}{
		{"*/5 * * * *", ""},
		{"0 3 * * mon-fri", ""},
		{"61 * * * *", "above maximum"},
		{"* 24 * * *", "above maximum"},
		{"* * 0 * *", "below minimum"},
		{"* * * 13 *", "above maximum"},
		{"*/0 * * * *", "step"},
		{"5-1 * * * *", "beyond end"},
		{"* * * * funday", "failed to parse"},
	} {
		err := checkCron(tc.schedule)
		if tc.want == "" {
			if err != nil {
				t.Errorf("checkCron(%q) = %v, want nil", tc.schedule, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.schedule) {
			t.Errorf("checkCron(%q) = %v, want an error naming it and saying %q", tc.schedule, err, tc.want)
		}
	}
}
