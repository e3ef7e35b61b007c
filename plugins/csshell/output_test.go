package csshell

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseOutput(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		want  any
		other []string
	}{
		{"empty", "", nil, nil},
		{"blank lines", "\r\n\r\n", nil, nil},
		{"one object", `{"Identity":"service:p","PoolState":1}` + "\r\n", map[string]any{"Identity": "service:p", "PoolState": float64(1)}, nil},
		{"array", `[{"a":1},{"a":2}]`, []any{map[string]any{"a": float64(1)}, map[string]any{"a": float64(2)}}, nil},
		{"bom", "\uFEFF{\"a\":true}", map[string]any{"a": true}, nil},
		{"pretty 5.1", "{\r\n    \"Identity\":  \"x\",\r\n    \"PoolState\":  0\r\n}\r\n", map[string]any{"Identity": "x", "PoolState": float64(0)}, nil},
		{"null", "null", nil, nil},
		{"date", `{"When":"\/Date(1700000000123)\/"}`, map[string]any{"When": "2023-11-14T22:13:20.123Z"}, nil},
		{"date with offset", `{"When":"/Date(-1000+0100)/"}`, map[string]any{"When": "1969-12-31T23:59:59Z"}, nil},
		{"value and count", `{"value":[{"a":1}],"Count":1}`, []any{map[string]any{"a": float64(1)}}, nil},
		{"value and other key", `{"value":[1],"Other":1}`, map[string]any{"value": []any{float64(1)}, "Other": float64(1)}, nil},
		{"host lines around", "WARNING: the module is old\r\n{\"a\":1}\r\nDone.\r\n", map[string]any{"a": float64(1)}, []string{"WARNING: the module is old", "Done."}},
		{"invalid utf-8 kept", "{\"a\":\"\xff\"}", map[string]any{"a": "\uFFFD"}, nil},
		{"big number", `{"n":1e400}`, map[string]any{"n": "1e400"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, other, err := parseOutput([]byte(tt.in))
			require.NoError(t, err)
			require.Equal(t, tt.want, v)
			require.Equal(t, tt.other, other)
		})
	}
	for _, bad := range []string{"not json", "{", `{"a":1} {"b":2}`, "VERBOSE: x"} {
		_, _, err := parseOutput([]byte(bad))
		require.ErrorIs(t, err, ErrBadOutput, bad)
	}
}

func TestObjectsAndProperties(t *testing.T) {
	objs, err := objects(nil)
	require.NoError(t, err)
	require.Empty(t, objs)
	objs, err = objects([]any{map[string]any{"a": 1.0}, nil})
	require.NoError(t, err)
	require.Len(t, objs, 1)
	_, err = objects("text")
	require.ErrorIs(t, err, ErrBadOutput)
	_, err = objects([]any{"text"})
	require.ErrorIs(t, err, ErrBadOutput)

	obj := map[string]any{
		"poolstate":     1.0,
		"Result":        "success",
		"Identity":      map[string]any{"ScopeClass": "Service", "InstanceId": "PersistentChatServer:p"},
		"ActiveServers": []any{"a.contoso.com", map[string]any{"Value": "b.contoso.com"}, nil},
		"Latency":       map[string]any{"TotalMilliseconds": 12.5},
		"Took":          "1.02:03:04.5000000",
	}
	s, err := enumName(obj, "PoolState", []string{"Normal", "FailedOver"})
	require.NoError(t, err)
	require.Equal(t, "FailedOver", s, "numbers map through the table; names match case-insensitively")
	s, err = enumName(obj, "Result", []string{"Success", "Failure"})
	require.NoError(t, err)
	require.Equal(t, "Success", s)
	_, err = enumName(map[string]any{"PoolState": 7.0}, "PoolState", []string{"Normal", "FailedOver"})
	require.ErrorContains(t, err, "UNVERIFIED")
	_, err = enumName(map[string]any{"PoolState": "Sideways"}, "PoolState", []string{"Normal", "FailedOver"})
	require.ErrorIs(t, err, ErrBadOutput)
	_, err = enumName(map[string]any{}, "PoolState", nil)
	require.ErrorIs(t, err, ErrBadOutput)

	require.Equal(t, "PersistentChatServer:p", text(obj, "identity"), "an XdsIdentity object is reduced to its identity string")
	require.Equal(t, []string{"a.contoso.com", "b.contoso.com"}, textList(obj, "ActiveServers"))
	require.Equal(t, []string{}, textList(obj, "Missing"))
	ms, ok := durationMS(obj, "Latency")
	require.True(t, ok)
	require.Equal(t, 12.5, ms)
	ms, ok = durationMS(obj, "Took")
	require.True(t, ok)
	require.Equal(t, 93784500.0, ms)
}

// FuzzParseOutput checks that the output parser never panics and that what
// it accepts is a JSON-like value pluginsdk.Output can carry.
func FuzzParseOutput(f *testing.F) {
	for _, s := range []string{
		`{"Identity":"PersistentChatServer:p","PoolState":0}`,
		`[{"Status":4,"Name":"RTCCHAT"},{"Status":1,"Name":"X"}]`,
		`{"value":[{"a":"\/Date(1700000000000)\/"}],"Count":1}`,
		"WARNING: x\r\n{\"a\":[1,2,{\"b\":null}]}\r\n",
		"\uFEFF", "null", "[", `{"a":"/Date(99999999999999999)/"}`, "\xff\xfe{",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, _, err := parseOutput(b)
		if err != nil {
			return
		}
		if _, err := json.Marshal(v); err != nil {
			t.Fatalf("parsed value is not JSON-like: %v", err)
		}
		objs, err := objects(v)
		if err != nil {
			return
		}
		for _, o := range objs {
			_ = text(o, "Identity")
			_ = textList(o, "ActiveServers")
			_, _ = durationMS(o, "Latency")
			_, _ = enumName(o, "PoolState", []string{"Normal", "FailedOver"})
		}
	})
}
