package io.mlvspark.pit;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Iterator;
import java.util.List;

import io.mlvspark.scans.Lookahead;

import org.apache.spark.api.java.function.FlatMapFunction;
import org.apache.spark.rdd.RDD;
import org.apache.spark.sql.catalyst.InternalRow;
import org.apache.spark.sql.catalyst.expressions.GenericInternalRow;
import org.apache.spark.sql.catalyst.expressions.UnsafeProjection;
import org.apache.spark.sql.catalyst.expressions.UnsafeRow;
import org.apache.spark.sql.execution.QueryExecution;
import org.apache.spark.sql.execution.QueryExecution$;
import org.apache.spark.sql.execution.SparkPlan;
import org.apache.spark.sql.types.DataType;
import org.apache.spark.sql.types.StructField;
import org.apache.spark.sql.types.StructType;

import scala.Option;

/**
 * The carry-forward step of mlv-spark's point-in-time join: one linear scan over rows that are
 * partitioned by the join keys and sorted within each partition by (keys, time key, tie-break
 * order), the winner of each tie sorting last.
 *
 * <p>Every input row is either an entity row (its {@code entity} column is not null) or a feature
 * row of exactly one view (that view's {@code values} column is not null, the others are). Walking
 * a key's rows in order, the scan keeps the latest feature row of each view and emits, for each
 * entity row, its {@code passthrough} columns followed by the value struct of each view's latest
 * row (null when the key had none yet). That is what a running {@code last(values, true) OVER
 * (PARTITION BY keys ORDER BY ...)} followed by a filter on entity rows computes, but it keeps one
 * struct per view instead of buffering each key's rows, and emits entity rows only.
 *
 * <p>The input's physical plan is prepared without adaptive execution so that the result stays
 * lazy: its shuffle runs only when the returned DataFrame is used (a broadcast in it, such as
 * the TTL filter's table, starts building at once). This uses Spark internals
 * ({@code QueryExecution.preparations}, {@code internalCreateDataFrame}) and is compiled against
 * each Spark line's own jars (`make scans-jar`); mlv-spark falls back to the window when the
 * class is missing or fails. It takes the input's {@code QueryExecution} and returns the
 * DataFrame as an {@code Object}, so that one source compiles on Spark 3.5 and 4.0: the two lines
 * name their Dataset and SparkSession classes differently ({@code org.apache.spark.sql} vs
 * {@code org.apache.spark.sql.classic}), their query executions the same.
 */
public final class CarryForward {
  private CarryForward() {}

  /**
   * @param sorted the query execution of rows partitioned by the first {@code keyCount} columns and sorted within each
   *     partition by them, then by the join's order (latest winner last)
   * @param entity index of the column that is non-null exactly on entity rows
   * @param passthrough indexes of the entity-row columns to output, in order
   * @param values indexes of the value-struct columns, one per view
   * @return a DataFrame ({@code Dataset<Row>}) of the {@code passthrough} columns, then one
   *     struct per view (same names as the inputs)
   */
  public static Object apply(
      QueryExecution sorted, int keyCount, int entity, int[] passthrough, int[] values) {
    // The input's own physical plan, prepared without adaptive execution: executing it builds
    // the RDD lineage lazily, without running its shuffle now.
    SparkPlan plan =
        QueryExecution$.MODULE$.prepareForExecution(
            QueryExecution$.MODULE$.preparations(sorted.sparkSession(), Option.empty(), false),
            sorted.sparkPlan());
    RDD<InternalRow> input = plan.execute();
    StructType schema = sorted.analyzed().schema();
    StructField[] fields = schema.fields();
    List<StructField> out = new ArrayList<>();
    DataType[] passTypes = new DataType[passthrough.length];
    for (int i = 0; i < passthrough.length; i++) {
      StructField field = fields[passthrough[i]];
      passTypes[i] = field.dataType();
      out.add(field);
    }
    int[] widths = new int[values.length];
    for (int v = 0; v < values.length; v++) {
      StructField field = fields[values[v]];
      widths[v] = ((StructType) field.dataType()).fields().length;
      out.add(new StructField(field.name(), field.dataType(), true, field.metadata()));
    }
    DataType[] keyTypes = new DataType[keyCount];
    for (int k = 0; k < keyCount; k++) {
      keyTypes[k] = fields[k].dataType();
    }
    Scan scan = new Scan(keyTypes, entity, passthrough, passTypes, values, widths);
    RDD<InternalRow> carried = input.toJavaRDD().mapPartitions(scan, true).rdd();
    return sorted
        .sparkSession()
        .internalCreateDataFrame(carried, new StructType(out.toArray(new StructField[0])), false);
  }

  /** The scan of one partition. */
  static final class Scan implements FlatMapFunction<Iterator<InternalRow>, InternalRow> {
    private static final long serialVersionUID = 1L;
    private final DataType[] keyTypes;
    private final int entity;
    private final int[] passthrough;
    private final DataType[] passTypes;
    private final int[] values;
    private final int[] widths;

    Scan(DataType[] keyTypes, int entity, int[] passthrough, DataType[] passTypes, int[] values, int[] widths) {
      this.keyTypes = keyTypes;
      this.entity = entity;
      this.passthrough = passthrough;
      this.passTypes = passTypes;
      this.values = values;
      this.widths = widths;
    }

    @Override
    public Iterator<InternalRow> call(Iterator<InternalRow> rows) {
      UnsafeProjection keyOf = UnsafeProjection.create(keyTypes);
      return new Lookahead<InternalRow>() {
        private UnsafeRow key;
        private final InternalRow[] latest = new InternalRow[values.length];

        @Override
        protected InternalRow advance() {
          while (rows.hasNext()) {
            InternalRow row = rows.next();
            UnsafeRow rowKey = keyOf.apply(row);
            if (key == null || !key.equals(rowKey)) {
              key = rowKey.copy();
              Arrays.fill(latest, null);
            }
            if (row.isNullAt(entity)) {
              for (int v = 0; v < values.length; v++) {
                if (!row.isNullAt(values[v])) {
                  latest[v] = row.getStruct(values[v], widths[v]).copy();
                  break;
                }
              }
            } else {
              Object[] out = new Object[passthrough.length + values.length];
              for (int i = 0; i < passthrough.length; i++) {
                out[i] = row.isNullAt(passthrough[i]) ? null : row.get(passthrough[i], passTypes[i]);
              }
              System.arraycopy(latest, 0, out, passthrough.length, values.length);
              return new GenericInternalRow(out);
            }
          }
          return null;
        }
      };
    }
  }
}
