package persist

import "testing"

func TestTopLevelString(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{`{"schema_version":1,"request_id":"r","conversation_id":"conv_1","message":{"conversation_id":"inner"}}`, "conv_1", true},
		{`{"message":{"conversation_id":"inner"},"steps":[{"a":[1,2,{"b":"c"}]}],"conversation_id":"conv_2"}`, "conv_2", true},
		{`{"request_id":"r"}`, "", false},
		{`{"conversation_id":42}`, "", false},
		{`[1,2]`, "", false},
		{`{"conversation_id":"x"`, "x", true},
		{`not json`, "", false},
	}
	for _, tc := range tests {
		got, ok := topLevelString([]byte(tc.in), "conversation_id")
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: %q %v, want %q %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func FuzzTopLevelString(f *testing.F) {
	f.Add([]byte(`{"conversation_id":"c","x":[{}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = topLevelString(data, "conversation_id")
	})
}
