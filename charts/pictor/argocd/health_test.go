// Runs every case of the health_test.yaml files under resource_customizations/ against its
// health.lua with gopher-lua, the Lua engine Argo CD runs health checks with, set up the way
// Argo CD sets it up: the base, table and package libraries only, the resource as the global
// `obj`, a one-second limit.
package argocd

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"
	"gopkg.in/yaml.v3"
)

type healthStatus struct {
	Status  string `yaml:"status" json:"status"`
	Message string `yaml:"message" json:"message"`
}

type healthTests struct {
	Tests []struct {
		HealthStatus healthStatus `yaml:"healthStatus"`
		InputPath    string       `yaml:"inputPath"`
	} `yaml:"tests"`
}

// The statuses Argo CD accepts from a health check.
var known = map[string]bool{
	"Healthy": true, "Progressing": true, "Degraded": true, "Suspended": true, "Missing": true, "Unknown": true,
}

// readObject reads a YAML resource as Argo CD holds it: JSON types, integers as int64.
func readObject(t *testing.T, path string) map[string]any {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var parsed any
	if err := yaml.Unmarshal(raw, &parsed); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	asJSON, err := json.Marshal(parsed)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	decoder := json.NewDecoder(bytes.NewReader(asJSON))
	decoder.UseNumber()
	var obj map[string]any
	if err := decoder.Decode(&obj); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return obj
}

// toLua converts a value the way Argo CD's util/lua decodeValue does.
func toLua(l *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return lua.LNumber(i)
		}
		f, _ := v.Float64()
		return lua.LNumber(f)
	case string:
		return lua.LString(v)
	case bool:
		return lua.LBool(v)
	case []any:
		table := l.CreateTable(len(v), 0)
		for _, item := range v {
			table.Append(toLua(l, item))
		}
		return table
	case map[string]any:
		table := l.CreateTable(0, len(v))
		for key, item := range v {
			table.RawSetH(lua.LString(key), toLua(l, item))
		}
		return table
	}
	return lua.LNil
}

func runHealth(t *testing.T, script string, obj map[string]any) healthStatus {
	t.Helper()
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{{lua.LoadLibName, lua.OpenPackage}, {lua.BaseLibName, lua.OpenBase}, {lua.TabLibName, lua.OpenTable}} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, obj))
	if err := l.DoString(script); err != nil {
		t.Fatalf("health.lua failed: %v", err)
	}
	table, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		t.Fatalf("health.lua returned %v, not a table", l.Get(-1))
	}
	return healthStatus{
		Status:  lua.LVAsString(table.RawGetString("status")),
		Message: lua.LVAsString(table.RawGetString("message")),
	}
}

func TestHealthChecks(t *testing.T) {
	files, err := filepath.Glob("resource_customizations/*/*/health_test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 2 {
		t.Fatalf("expected the RenderJob and TrainingJob checks, found %v", files)
	}
	for _, file := range files {
		dir := filepath.Dir(file)
		script, err := os.ReadFile(filepath.Join(dir, "health.lua"))
		if err != nil {
			t.Fatal(err)
		}
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var cases healthTests
		if err := yaml.Unmarshal(raw, &cases); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if len(cases.Tests) == 0 {
			t.Fatalf("%s has no tests", file)
		}
		for _, c := range cases.Tests {
			c := c
			t.Run(filepath.Join(dir, c.InputPath), func(t *testing.T) {
				got := runHealth(t, string(script), readObject(t, filepath.Join(dir, c.InputPath)))
				if !known[got.Status] {
					t.Fatalf("status %q is not one Argo CD knows", got.Status)
				}
				if got != c.HealthStatus {
					t.Fatalf("got %+v, want %+v", got, c.HealthStatus)
				}
			})
		}
	}
}

// The values snippet carries the same scripts as the files the tests run.
func TestValuesSnippetMatchesTheScripts(t *testing.T) {
	raw, err := os.ReadFile("argocd-values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var values struct {
		Configs struct {
			Cm map[string]string `yaml:"cm"`
		} `yaml:"configs"`
	}
	if err := yaml.Unmarshal(raw, &values); err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"RenderJob", "TrainingJob"} {
		script, err := os.ReadFile(filepath.Join("resource_customizations", "pictor.network", kind, "health.lua"))
		if err != nil {
			t.Fatal(err)
		}
		key := "resource.customizations.health.pictor.network_" + kind
		if values.Configs.Cm[key] != string(script) {
			t.Errorf("%s in argocd-values.yaml differs from %s/health.lua", key, kind)
		}
	}
}
