package catalog

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
)

// normKey folds a parameter or field name for matching: "size_limit", "sizeLimit", "SizeLimit"
// and "size-limit" all become "sizelimit".
func normKey(s string) string {
	s = strings.ToLower(s)
	return strings.NewReplacer("_", "", "-", "").Replace(s)
}

// Decode sets the exported fields of the struct dst points to from params, matching keys to
// field names case-insensitively and ignoring '_' and '-'. Values may be of the field's type or
// strings (as from the command line: "0.5", "30s", "true", "a,b" for a list). A nested struct
// takes a map, or dotted keys ("calibrator.window"). An unknown key, or a value that does not fit
// its field, is an error naming the key; fields with no key keep their value (the default).
func Decode(params map[string]any, dst any) error {
	return decode(params, reflect.ValueOf(dst).Elem(), "")
}

func decode(params map[string]any, v reflect.Value, prefix string) error {
	fields := map[string]int{}
	for i := 0; i < v.NumField(); i++ {
		if v.Type().Field(i).IsExported() {
			fields[normKey(v.Type().Field(i).Name)] = i
		}
	}
	nested := map[string]map[string]any{}
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys) // deterministic error for several bad keys
	for _, k := range keys {
		val := params[k]
		head, rest, dotted := strings.Cut(k, ".")
		i, ok := fields[normKey(head)]
		if !ok {
			known := make([]string, 0, len(fields))
			for i := 0; i < v.NumField(); i++ {
				if v.Type().Field(i).IsExported() {
					known = append(known, strings.ToLower(v.Type().Field(i).Name))
				}
			}
			sort.Strings(known)
			return fmt.Errorf("unknown param %q (known: %s)", prefix+k, strings.Join(known, ", "))
		}
		f := v.Field(i)
		if dotted {
			if f.Kind() != reflect.Struct {
				return fmt.Errorf("param %q: %s is not a group of params", prefix+k, head)
			}
			if nested[head] == nil {
				nested[head] = map[string]any{}
			}
			nested[head][rest] = val
			continue
		}
		if err := set(f, val, prefix+k); err != nil {
			return err
		}
	}
	for head, m := range nested {
		if err := decode(m, v.Field(fields[normKey(head)]), prefix+head+"."); err != nil {
			return err
		}
	}
	return nil
}

var durationType = reflect.TypeOf(time.Duration(0))

func set(f reflect.Value, val any, key string) error {
	bad := func(want string) error {
		return fmt.Errorf("param %q: %v is not %s", key, val, want)
	}
	s, isString := val.(string)
	if f.Type() == durationType {
		switch x := val.(type) {
		case string:
			d, err := time.ParseDuration(x)
			if err != nil {
				return bad("a duration such as 30s")
			}
			f.SetInt(int64(d))
		case time.Duration:
			f.SetInt(int64(x))
		default:
			return bad("a duration such as 30s")
		}
		return nil
	}
	switch f.Kind() {
	case reflect.String:
		switch x := val.(type) {
		case string:
			f.SetString(x)
		case int, int64, float64, uint64:
			f.SetString(fmt.Sprint(x)) // "threshold: 80" in YAML arrives as a number
		default:
			return bad("a string")
		}
	case reflect.Bool:
		switch {
		case isString:
			b, err := strconv.ParseBool(s)
			if err != nil {
				return bad("true or false")
			}
			f.SetBool(b)
		default:
			b, ok := val.(bool)
			if !ok {
				return bad("true or false")
			}
			f.SetBool(b)
		}
	case reflect.Int, reflect.Int64, reflect.Int32:
		var n int64
		switch x := val.(type) {
		case string:
			p, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64)
			if err != nil {
				return bad("an integer")
			}
			n = p
		case int:
			n = int64(x)
		case int64:
			n = x
		case uint64:
			n = int64(x)
		case float64:
			if x != float64(int64(x)) {
				return bad("an integer")
			}
			n = int64(x)
		default:
			return bad("an integer")
		}
		if f.OverflowInt(n) {
			return bad("an integer in range")
		}
		f.SetInt(n)
	case reflect.Uint, reflect.Uint64, reflect.Uint32, reflect.Uint8:
		var n uint64
		switch x := val.(type) {
		case string:
			p, err := strconv.ParseUint(strings.TrimSpace(x), 10, 64)
			if err != nil {
				return bad("a non-negative integer")
			}
			n = p
		case int:
			if x < 0 {
				return bad("a non-negative integer")
			}
			n = uint64(x)
		case uint64:
			n = x
		case float64:
			if x < 0 || x != float64(uint64(x)) {
				return bad("a non-negative integer")
			}
			n = uint64(x)
		default:
			return bad("a non-negative integer")
		}
		if f.OverflowUint(n) {
			return bad("an integer in range")
		}
		f.SetUint(n)
	case reflect.Float64:
		switch x := val.(type) {
		case string:
			p, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
			if err != nil {
				return bad("a number")
			}
			f.SetFloat(p)
		case float64:
			f.SetFloat(x)
		case int:
			f.SetFloat(float64(x))
		case int64:
			f.SetFloat(float64(x))
		default:
			return bad("a number")
		}
	case reflect.Slice:
		var items []any
		switch x := val.(type) {
		case string:
			for _, part := range strings.Split(x, ",") {
				items = append(items, strings.TrimSpace(part))
			}
		case []any:
			items = x
		case []string:
			for _, p := range x {
				items = append(items, p)
			}
		case []float64:
			for _, p := range x {
				items = append(items, p)
			}
		default:
			return bad("a list")
		}
		out := reflect.MakeSlice(f.Type(), len(items), len(items))
		for i, it := range items {
			if err := set(out.Index(i), it, fmt.Sprintf("%s[%d]", key, i)); err != nil {
				return err
			}
		}
		f.Set(out)
	case reflect.Struct:
		m, ok := val.(map[string]any)
		if !ok {
			return bad("a group of params")
		}
		return decode(m, f, key+".")
	default:
		return fmt.Errorf("param %q: fields of type %s cannot be set", key, f.Type())
	}
	return nil
}
