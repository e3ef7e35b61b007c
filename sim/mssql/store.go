package mssql

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The durable state lives in one bbolt file in the data directory. Every
// committed statement is one bbolt transaction, fsynced before the client
// gets its answer, so a kill -9 loses at most the statement in flight.
//
// Layout:
//
//	dbs                      name (lower case) -> dbMeta JSON
//	db:<name>/tables         schema.table (lower case) -> tableMeta JSON
//	db:<name>/rows:<s.t>     row id (uint64 big endian) -> []*string JSON
const storeFile = "engine.db"

var bucketDBs = []byte("dbs")

// store wraps the bbolt database.
type store struct {
	db *bolt.DB
}

func openStore(dir string) (*store, error) {
	db, err := bolt.Open(filepath.Join(dir, storeFile), 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("%w: open %s: %w", ErrStorage, dir, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketDBs)
		return err
	}); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("%w: init: %w", ErrStorage, err)
	}
	return &store{db: db}, nil
}

func (s *store) close() error { return s.db.Close() }

// update runs fn in one durable transaction.
func (s *store) update(fn func(tx *bolt.Tx) error) error {
	if err := s.db.Update(fn); err != nil {
		return fmt.Errorf("%w: %w", ErrStorage, err)
	}
	return nil
}

func dbBucketName(name string) []byte { return []byte("db:" + strings.ToLower(name)) }

func rowsBucketName(t *table) []byte {
	return []byte("rows:" + t.key())
}

func rowKey(id uint64) []byte { return binary.BigEndian.AppendUint64(nil, id) }

// putDB writes a database's metadata.
func putDB(tx *bolt.Tx, d *database) error {
	b, err := json.Marshal(d.dbMeta)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketDBs).Put([]byte(strings.ToLower(d.Name)), b)
}

// dbBucket returns (creating it) the bucket of a database.
func dbBucket(tx *bolt.Tx, d *database) (*bolt.Bucket, error) {
	return tx.CreateBucketIfNotExists(dbBucketName(d.Name))
}

// putTable writes a table's definition and identity counter.
func putTable(tx *bolt.Tx, d *database, t *table) error {
	db, err := dbBucket(tx, d)
	if err != nil {
		return err
	}
	tb, err := db.CreateBucketIfNotExists([]byte("tables"))
	if err != nil {
		return err
	}
	b, err := json.Marshal(t.tableMeta)
	if err != nil {
		return err
	}
	if _, err := db.CreateBucketIfNotExists(rowsBucketName(t)); err != nil {
		return err
	}
	return tb.Put([]byte(t.key()), b)
}

// putRow writes one row.
func putRow(tx *bolt.Tx, d *database, t *table, r *row) error {
	db, err := dbBucket(tx, d)
	if err != nil {
		return err
	}
	rb, err := db.CreateBucketIfNotExists(rowsBucketName(t))
	if err != nil {
		return err
	}
	enc := make([]*string, len(r.vals))
	for i, v := range r.vals {
		enc[i] = encodeValue(v)
	}
	b, err := json.Marshal(enc)
	if err != nil {
		return err
	}
	return rb.Put(rowKey(r.id), b)
}

// deleteRow removes one row.
func deleteRow(tx *bolt.Tx, d *database, t *table, id uint64) error {
	db := tx.Bucket(dbBucketName(d.Name))
	if db == nil {
		return nil
	}
	rb := db.Bucket(rowsBucketName(t))
	if rb == nil {
		return nil
	}
	return rb.Delete(rowKey(id))
}

// dropTable removes a table and its rows.
func dropTableTx(tx *bolt.Tx, d *database, t *table) error {
	db := tx.Bucket(dbBucketName(d.Name))
	if db == nil {
		return nil
	}
	if tb := db.Bucket([]byte("tables")); tb != nil {
		if err := tb.Delete([]byte(t.key())); err != nil {
			return err
		}
	}
	if db.Bucket(rowsBucketName(t)) != nil {
		return db.DeleteBucket(rowsBucketName(t))
	}
	return nil
}

// dropDBTx removes a database and all its content.
func dropDBTx(tx *bolt.Tx, name string) error {
	if err := tx.Bucket(bucketDBs).Delete([]byte(strings.ToLower(name))); err != nil {
		return err
	}
	if tx.Bucket(dbBucketName(name)) != nil {
		return tx.DeleteBucket(dbBucketName(name))
	}
	return nil
}

// putDBContent rewrites a database completely (restore).
func putDBContent(tx *bolt.Tx, d *database) error {
	if tx.Bucket(dbBucketName(d.Name)) != nil {
		if err := tx.DeleteBucket(dbBucketName(d.Name)); err != nil {
			return err
		}
	}
	if err := putDB(tx, d); err != nil {
		return err
	}
	if _, err := dbBucket(tx, d); err != nil {
		return err
	}
	for _, t := range d.tables {
		if err := putTable(tx, d, t); err != nil {
			return err
		}
		for _, r := range t.rows {
			if err := putRow(tx, d, t, r); err != nil {
				return err
			}
		}
	}
	return nil
}

// load reads every database.
func (s *store) load() (map[string]*database, error) {
	out := map[string]*database{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketDBs).ForEach(func(k, v []byte) error {
			d := &database{tables: map[string]*table{}}
			if err := json.Unmarshal(v, &d.dbMeta); err != nil {
				return fmt.Errorf("database %s: %w", k, err)
			}
			out[string(k)] = d
			db := tx.Bucket(dbBucketName(d.Name))
			if db == nil {
				return nil
			}
			tb := db.Bucket([]byte("tables"))
			if tb == nil {
				return nil
			}
			return tb.ForEach(func(tk, tv []byte) error {
				t := &table{}
				if err := json.Unmarshal(tv, &t.tableMeta); err != nil {
					return fmt.Errorf("table %s.%s: %w", d.Name, tk, err)
				}
				if err := t.prepare(); err != nil {
					return fmt.Errorf("table %s.%s: %w", d.Name, tk, err)
				}
				d.tables[t.key()] = t
				rb := db.Bucket(rowsBucketName(t))
				if rb == nil {
					return nil
				}
				return rb.ForEach(func(rk, rv []byte) error {
					var enc []*string
					if err := json.Unmarshal(rv, &enc); err != nil {
						return err
					}
					r := &row{id: binary.BigEndian.Uint64(rk), vals: make([]any, len(t.Cols))}
					for i, c := range t.Cols {
						if i >= len(enc) {
							break
						}
						v, err := decodeValue(enc[i], c.Type)
						if err != nil {
							return fmt.Errorf("row %d of %s: %w", r.id, t.Name, err)
						}
						r.vals[i] = v
					}
					t.rows = append(t.rows, r)
					if r.id >= t.NextRowID {
						t.NextRowID = r.id + 1
					}
					return nil
				})
			})
		})
	})
	if err != nil {
		return nil, fmt.Errorf("%w: load: %w", ErrStorage, err)
	}
	return out, nil
}
