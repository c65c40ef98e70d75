package io.mlvspark.splits;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Iterator;
import java.util.List;

import io.mlvspark.scans.Lookahead;

import org.apache.spark.api.java.function.FlatMapFunction;
import org.apache.spark.rdd.RDD;
import org.apache.spark.sql.catalyst.InternalRow;
import org.apache.spark.sql.catalyst.expressions.GenericInternalRow;
import org.apache.spark.sql.execution.QueryExecution;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.sql.types.Metadata;
import org.apache.spark.sql.types.StructField;
import org.apache.spark.sql.types.StructType;

/**
 * The histogram pass of mlv-spark's exact splits, as one scan per partition: partial aggregates
 * per (period, stratum id, rotation, bucket) of the atoms' count and the min, max and xor of their
 * hashes, plus columns summed and columns maxed. Partial: a (stratum, bucket) may appear in
 * several output rows (from several partitions, or flushed twice); the caller merges them.
 *
 * <p>Why not Spark's hash aggregation: most groups hold one atom (a rare stratum's entities,
 * each alone in its bucket), so its map has about one entry per such atom and every row's first
 * look at its group misses the cache. Here each stratum first keeps a plain list that rows are
 * appended to (sequential writes), and only a stratum with more atoms in a partition than
 * buckets switches to an array indexed by coarse bucket. Bucket keys are {@code coarse <<
 * fineBits} or, near an expected cut, a finer key in the same coarse range; a coarse slot that
 * sees two different keys is fine-grained, and its rows go to the list. Negative keys (atoms
 * kept from a previous assignment, failed checks) are a handful per stratum, kept apart. When
 * the lists of a partition hold {@code flushRows} rows they are emitted and emptied, and when its
 * arrays hold more than {@code flushRows} buckets everything is emitted and the scan starts
 * afresh: memory stays below twice {@code flushRows} rows of aggregates.
 *
 * <p>Input columns, all non-null longs: period, stratum id, rotation, bucket key, hash, then
 * {@code sums} columns, then {@code maxes} columns. Output: period, sid, rotation, bucket, n,
 * hmin, hmax, hxor, then the summed and maxed columns under their input names.
 */
public final class HistogramSketch {
  private HistogramSketch() {}

  /**
   * @param input the query execution of the input rows (the same class on Spark 3.5 and 4.0,
   *     unlike their Dataset classes)
   * @return a DataFrame ({@code Dataset<Row>}) of the partial aggregates
   */
  public static Object apply(QueryExecution input, int bits, int fineBits, int sums, int maxes, int flushRows) {
    RDD<InternalRow> rows = input.toRdd();
    List<StructField> out = new ArrayList<>();
    for (String name : new String[] {"period", "sid", "rotation", "bucket", "n", "hmin", "hmax", "hxor"}) {
      out.add(new StructField(name, DataTypes.LongType, false, Metadata.empty()));
    }
    StructField[] fields = input.analyzed().schema().fields();
    for (int i = 0; i < sums + maxes; i++) {
      out.add(new StructField(fields[5 + i].name(), DataTypes.LongType, false, Metadata.empty()));
    }
    Sketch sketch = new Sketch(bits, fineBits, sums, maxes, flushRows);
    RDD<InternalRow> partial = rows.toJavaRDD().mapPartitions(sketch, false).rdd();
    return input.sparkSession().internalCreateDataFrame(partial, new StructType(out.toArray(new StructField[0])), false);
  }

  /** Aggregate rows (key, n, min, max, xor, sums..., maxes...), row-major in one array. */
  static final class Table {
    final int width;
    final int sums;
    long[] data;
    int size;

    Table(int width, int sums, int capacity) {
      this.width = width;
      this.sums = sums;
      this.data = new long[Math.max(1, capacity) * width];
    }

    /** Append an aggregate (`source` row-major at `from`, with its key in place). */
    void append(long[] source, int from) {
      if ((size + 1) * width > data.length) {
        data = Arrays.copyOf(data, Math.max(data.length * 2, (size + 1) * width));
      }
      System.arraycopy(source, from, data, size * width, width);
      size++;
    }

    /** Fold the aggregate at `source[from..]` into row `index`. */
    void merge(int index, long[] source, int from) {
      int at = index * width;
      data[at + 1] += source[from + 1];
      data[at + 2] = Math.min(data[at + 2], source[from + 2]);
      data[at + 3] = Math.max(data[at + 3], source[from + 3]);
      data[at + 4] ^= source[from + 4];
      for (int i = 5; i < width; i++) {
        data[at + i] = i < 5 + sums ? data[at + i] + source[from + i] : Math.max(data[at + i], source[from + i]);
      }
    }
  }

  /** One stratum's aggregates in a partition. */
  static final class Stratum {
    static final long EMPTY = -1L;
    static final long FINE = -2L;
    static final int SPECIAL_KEYS = 32;

    final long period;
    final long sid;
    final long rotation;
    Table list;
    Table dense; // one row per coarse bucket; key EMPTY, FINE, or the one key seen
    final Table special; // negative keys, at most SPECIAL_KEYS of them

    Stratum(long period, long sid, long rotation, int width, int sums) {
      this.period = period;
      this.sid = sid;
      this.rotation = rotation;
      this.list = new Table(width, sums, 4);
      this.special = new Table(width, sums, 1);
    }
  }

  /** The scan of one partition. */
  static final class Sketch implements FlatMapFunction<Iterator<InternalRow>, InternalRow> {
    private static final long serialVersionUID = 1L;
    private final int bits;
    private final int fineBits;
    private final int sums;
    private final int maxes;
    private final int flushRows;

    Sketch(int bits, int fineBits, int sums, int maxes, int flushRows) {
      this.bits = bits;
      this.fineBits = fineBits;
      this.sums = sums;
      this.maxes = maxes;
      this.flushRows = flushRows;
    }

    @Override
    public Iterator<InternalRow> call(Iterator<InternalRow> rows) {
      return new Partition(rows, bits, fineBits, sums, maxes, flushRows);
    }
  }

  /** Consumes a partition's rows, emitting the lists whenever they fill up and everything at the end. */
  static final class Partition extends Lookahead<InternalRow> {
    private final Iterator<InternalRow> rows;
    private final int width;
    private final int sums;
    private final int buckets;
    private final int fineBits;
    private final int flushRows;
    private final long[] scratch;
    private Stratum[] slots = new Stratum[64];
    private final List<Stratum> strata = new ArrayList<>();
    private Stratum last;
    private int listed;
    private long denseSlots;
    private boolean done;
    // drain cursor: which strata, which table, which row
    private boolean draining;
    private boolean drainAll;
    private int drainStratum;
    private int drainTable;
    private int drainRow;

    Partition(Iterator<InternalRow> rows, int bits, int fineBits, int sums, int maxes, int flushRows) {
      this.rows = rows;
      this.width = 5 + sums + maxes;
      this.sums = sums;
      this.buckets = 1 << bits;
      this.fineBits = fineBits;
      this.flushRows = flushRows;
      this.scratch = new long[width];
    }

    @Override
    protected InternalRow advance() {
      while (true) {
        if (draining) {
          InternalRow row = drainOne();
          if (row != null) {
            return row;
          }
        } else if (done) {
          return null;
        } else {
          consume();
        }
      }
    }

    /** Reads rows until the lists are full or the input ends, then starts draining. */
    private void consume() {
      long[] row = scratch;
      while (rows.hasNext()) {
        InternalRow input = rows.next();
        long period = input.getLong(0);
        long sid = input.getLong(1);
        long rotation = input.getLong(2);
        long h = input.getLong(4);
        row[0] = input.getLong(3);
        row[1] = 1;
        row[2] = h;
        row[3] = h;
        row[4] = h;
        for (int i = 5; i < width; i++) {
          row[i] = input.getLong(i);
        }
        add(stratum(period, sid, rotation), row);
        if (listed >= flushRows || denseSlots > flushRows) {
          startDrain(denseSlots > flushRows);
          return;
        }
      }
      done = true;
      startDrain(true);
    }

    private void add(Stratum s, long[] row) {
      long key = row[0];
      if (key < 0) {
        Table special = s.special;
        for (int i = 0; i < special.size; i++) {
          if (special.data[i * width] == key) {
            special.merge(i, row, 0);
            return;
          }
        }
        if (special.size < Stratum.SPECIAL_KEYS) {
          special.append(row, 0);
        } else {
          s.list.append(row, 0);
          listed++;
        }
        return;
      }
      if (s.dense == null) {
        s.list.append(row, 0);
        listed++;
        if (s.list.size >= buckets) {
          toDense(s);
        }
        return;
      }
      addDense(s, row);
    }

    private void addDense(Stratum s, long[] row) {
      long key = row[0];
      long coarse = key >>> fineBits;
      if (coarse >= buckets) {
        s.list.append(row, 0);
        listed++;
        return;
      }
      Table dense = s.dense;
      int c = (int) coarse;
      long seen = dense.data[c * width];
      if (seen == key) {
        dense.merge(c, row, 0);
      } else if (seen == Stratum.EMPTY) {
        System.arraycopy(row, 0, dense.data, c * width, width);
      } else {
        if (seen != Stratum.FINE) { // a second key in this coarse range: it is fine-grained
          s.list.append(dense.data, c * width);
          listed++;
          dense.data[c * width] = Stratum.FINE;
        }
        s.list.append(row, 0);
        listed++;
      }
    }

    /** A stratum with more listed atoms than buckets: fold its list into an array by bucket. */
    private void toDense(Stratum s) {
      Table dense = new Table(width, sums, buckets);
      dense.size = buckets;
      for (int c = 0; c < buckets; c++) {
        dense.data[c * width] = Stratum.EMPTY;
      }
      s.dense = dense;
      denseSlots += buckets;
      Table old = s.list;
      s.list = new Table(width, sums, 16);
      listed -= old.size;
      long[] row = new long[width];
      for (int i = 0; i < old.size; i++) {
        System.arraycopy(old.data, i * width, row, 0, width);
        addDense(s, row);
      }
    }

    private Stratum stratum(long period, long sid, long rotation) {
      Stratum s = last;
      if (s != null && s.sid == sid && s.rotation == rotation && s.period == period) {
        return s;
      }
      int mask = slots.length - 1;
      int i = (int) (mix(sid ^ rotation ^ period) & mask);
      while ((s = slots[i]) != null) {
        if (s.sid == sid && s.rotation == rotation && s.period == period) {
          last = s;
          return s;
        }
        i = (i + 1) & mask;
      }
      s = new Stratum(period, sid, rotation, width, sums);
      slots[i] = s;
      strata.add(s);
      if (strata.size() * 2 > slots.length) {
        rehash();
      }
      last = s;
      return s;
    }

    private void rehash() {
      slots = new Stratum[slots.length * 2];
      int mask = slots.length - 1;
      for (Stratum s : strata) {
        int i = (int) (mix(s.sid ^ s.rotation ^ s.period) & mask);
        while (slots[i] != null) {
          i = (i + 1) & mask;
        }
        slots[i] = s;
      }
    }

    private static long mix(long x) {
      x ^= x >>> 33;
      x *= 0xff51afd7ed558ccdL;
      x ^= x >>> 33;
      return x;
    }

    private void startDrain(boolean all) {
      draining = true;
      drainAll = all;
      drainStratum = 0;
      drainTable = all ? 0 : 2;
      drainRow = 0;
    }

    /** The next aggregate to emit, or null when the drain is over (lists are then empty). */
    private InternalRow drainOne() {
      while (drainStratum < strata.size()) {
        Stratum s = strata.get(drainStratum);
        Table table = drainTable == 0 ? s.special : drainTable == 1 ? s.dense : s.list;
        while (table != null && drainRow < table.size) {
          int at = drainRow++ * width;
          long key = table.data[at];
          if (drainTable == 1 && (key == Stratum.EMPTY || key == Stratum.FINE)) {
            continue;
          }
          return emit(s, table.data, at);
        }
        drainRow = 0;
        if (drainTable == 2) {
          s.list = new Table(width, sums, 4);
          drainTable = drainAll ? 0 : 2;
          drainStratum++;
        } else {
          drainTable++;
        }
      }
      if (drainAll) { // everything emitted: start afresh (the end of the input, or too many dense strata)
        strata.clear();
        slots = new Stratum[64];
        last = null;
        denseSlots = 0;
      }
      listed = 0;
      draining = false;
      return null;
    }

    private InternalRow emit(Stratum s, long[] data, int at) {
      Object[] out = new Object[3 + width];
      out[0] = s.period;
      out[1] = s.sid;
      out[2] = s.rotation;
      for (int i = 0; i < width; i++) {
        out[3 + i] = data[at + i];
      }
      return new GenericInternalRow(out);
    }
  }
}
