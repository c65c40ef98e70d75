package io.mlvspark.iceberg;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.function.Function;
import java.util.regex.Pattern;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.Path;
import org.apache.iceberg.hadoop.HadoopConfigurable;
import org.apache.iceberg.hadoop.HadoopFileIO;
import org.apache.iceberg.io.BulkDeletionFailureException;
import org.apache.iceberg.io.FileInfo;
import org.apache.iceberg.io.FileIO;
import org.apache.iceberg.io.InputFile;
import org.apache.iceberg.io.OutputFile;
import org.apache.iceberg.io.PositionOutputStream;
import org.apache.iceberg.io.SeekableInputStream;
import org.apache.iceberg.io.SupportsBulkOperations;
import org.apache.iceberg.io.SupportsPrefixOperations;
import org.apache.iceberg.util.SerializableSupplier;

/**
 * A {@link FileIO} bound to the root of one lakeFS ref (branch, tag or commit), e.g. {@code
 * s3a://repo/main}.
 *
 * <p>Paths handed to this FileIO may be <em>ref-relative</em> ({@code ml/t/data/x.parquet}): they
 * are resolved against the ref root for the actual I/O, while {@link InputFile#location()} and
 * {@link OutputFile#location()} keep returning the relative string. Because Iceberg records
 * {@code location()} of the files it writes into manifests, manifest lists and metadata JSON, the
 * table metadata never contains the ref name, so it stays valid when lakeFS merges the branch
 * into another one, when the branch is deleted, or when it is read at a tag or commit.
 *
 * <p>Absolute paths (anything with a URI scheme, or starting with {@code /}) pass through
 * unchanged, so tables that contain absolute paths remain readable.
 *
 * <p>The I/O itself is done by a wrapped {@link HadoopFileIO}; this class is {@link
 * java.io.Serializable} (Spark ships it to executors) as long as the Hadoop configuration supplier
 * is, which {@link #serializeConfWith} takes care of.
 */
public class LakeFSRefFileIO
    implements FileIO, SupportsPrefixOperations, SupportsBulkOperations, HadoopConfigurable {
  private static final long serialVersionUID = 1L;

  /** FileIO property holding the absolute URI of the ref root, e.g. {@code s3a://repo/main}. */
  public static final String REF_ROOT_PROPERTY = "lakefs.ref-root";

  private static final Pattern URI_SCHEME = Pattern.compile("^[A-Za-z][A-Za-z0-9+.\\-]*:.*");

  private String refRoot;
  private final HadoopFileIO delegate;
  private HashMap<String, String> properties = new HashMap<>();

  /** Constructor for dynamic loading; call {@link #initialize} with {@link #REF_ROOT_PROPERTY}. */
  public LakeFSRefFileIO() {
    this.delegate = new HadoopFileIO();
  }

  public LakeFSRefFileIO(String refRoot, Configuration conf) {
    this.delegate = new HadoopFileIO(conf);
    setRefRoot(refRoot);
    this.properties.put(REF_ROOT_PROPERTY, this.refRoot);
    delegate.initialize(this.properties);
  }

  private void setRefRoot(String root) {
    if (root == null || root.isEmpty()) {
      throw new IllegalArgumentException("LakeFSRefFileIO needs a ref root URI (" + REF_ROOT_PROPERTY + ")");
    }
    if (!isAbsolute(root)) {
      throw new IllegalArgumentException(
          "LakeFSRefFileIO ref root must be an absolute URI such as s3a://repo/main, got: " + root);
    }
    String r = root;
    while (r.endsWith("/") && !r.endsWith("://")) {
      r = r.substring(0, r.length() - 1);
    }
    this.refRoot = r;
  }

  @Override
  public void initialize(Map<String, String> props) {
    HashMap<String, String> copy = new HashMap<>(props);
    if (copy.containsKey(REF_ROOT_PROPERTY)) {
      setRefRoot(copy.get(REF_ROOT_PROPERTY));
    } else if (refRoot != null) {
      copy.put(REF_ROOT_PROPERTY, refRoot);
    } else {
      throw new IllegalArgumentException("LakeFSRefFileIO needs property " + REF_ROOT_PROPERTY);
    }
    this.properties = copy;
    delegate.initialize(copy);
  }

  @Override
  public Map<String, String> properties() {
    return Collections.unmodifiableMap(properties);
  }

  /** Absolute URI of the ref root this FileIO resolves relative paths against. */
  public String refRoot() {
    return refRoot;
  }

  /** True if {@code path} is absolute: it has a URI scheme or starts with {@code /}. */
  public static boolean isAbsolute(String path) {
    return path.startsWith("/") || URI_SCHEME.matcher(path).matches();
  }

  /** The physical location of {@code path}: relative paths are resolved against the ref root. */
  public String resolve(String path) {
    Objects.requireNonNull(path, "path");
    if (isAbsolute(path)) {
      return path;
    }
    if (path.isEmpty()) {
      return refRoot;
    }
    return refRoot + "/" + path;
  }

  /**
   * The ref-relative form of an absolute location under this ref root, or {@code location}
   * unchanged when it is relative already or outside the ref root. Compares scheme, authority and
   * path after Hadoop normalisation, so {@code file:/x} and {@code file:///x} are the same.
   */
  public String relativize(String location) {
    if (!isAbsolute(location)) {
      return location;
    }
    java.net.URI root = new Path(refRoot).toUri();
    java.net.URI loc = new Path(location).toUri();
    if (!Objects.equals(lower(root.getScheme()), lower(loc.getScheme()))
        || !Objects.equals(emptyToNull(root.getAuthority()), emptyToNull(loc.getAuthority()))) {
      return location;
    }
    String rootPath = root.getPath() == null ? "" : root.getPath();
    while (rootPath.endsWith("/")) {
      rootPath = rootPath.substring(0, rootPath.length() - 1);
    }
    String locPath = loc.getPath() == null ? "" : loc.getPath();
    if (locPath.startsWith(rootPath + "/") && locPath.length() > rootPath.length() + 1) {
      return locPath.substring(rootPath.length() + 1);
    }
    return location;
  }

  private static String lower(String s) {
    return s == null ? null : s.toLowerCase(java.util.Locale.ROOT);
  }

  private static String emptyToNull(String s) {
    return s == null || s.isEmpty() ? null : s;
  }

  @Override
  public InputFile newInputFile(String path) {
    return new RefInputFile(path, delegate.newInputFile(resolve(path)));
  }

  @Override
  public InputFile newInputFile(String path, long length) {
    return new RefInputFile(path, delegate.newInputFile(resolve(path), length));
  }

  @Override
  public OutputFile newOutputFile(String path) {
    return new RefOutputFile(path, delegate.newOutputFile(resolve(path)), refRoot);
  }

  /**
   * Through lakeFS's S3 gateway a write to a ref that is not a branch (a tag, a commit id, a
   * missing branch) fails with 404 NoSuchBucket, which S3A reports as UnknownStoreException
   * naming only the object key. Add the ref root and the likely cause.
   */
  static IOException explainWriteFailure(IOException e, String location, String refRoot) {
    if (!NotFound.isMissingRef(e)) {
      return e;
    }
    return new IOException(
        String.format(
            "Cannot write %s under %s: lakeFS reports the ref as missing. Tags and commit ids are"
                + " read-only; write to an existing branch",
            location, refRoot),
        e);
  }

  @Override
  public void deleteFile(String path) {
    delegate.deleteFile(resolve(path));
  }

  @Override
  public void deleteFiles(Iterable<String> pathsToDelete) throws BulkDeletionFailureException {
    List<String> resolved = new ArrayList<>();
    for (String p : pathsToDelete) {
      resolved.add(resolve(p));
    }
    delegate.deleteFiles(resolved);
  }

  /**
   * Lists files under a prefix. For a relative prefix the returned locations are relative too, so
   * they compare equal to the paths recorded in table metadata (this is what lets {@code
   * remove_orphan_files(..., prefix_listing => true)} work).
   */
  @Override
  public Iterable<FileInfo> listPrefix(String prefix) {
    final boolean relative = !isAbsolute(prefix);
    final Iterable<FileInfo> listed = delegate.listPrefix(resolve(prefix));
    if (!relative) {
      return listed;
    }
    return () -> {
      Iterator<FileInfo> it = listed.iterator();
      return new Iterator<FileInfo>() {
        @Override
        public boolean hasNext() {
          return it.hasNext();
        }

        @Override
        public FileInfo next() {
          FileInfo f = it.next();
          return new FileInfo(relativize(f.location()), f.size(), f.createdAtMillis());
        }
      };
    };
  }

  @Override
  public void deletePrefix(String prefix) {
    delegate.deletePrefix(resolve(prefix));
  }

  @Override
  public void close() {
    delegate.close();
  }

  @Override
  public void setConf(Configuration conf) {
    delegate.setConf(conf);
  }

  @Override
  public Configuration getConf() {
    return delegate.getConf();
  }

  @Override
  public void serializeConfWith(
      Function<Configuration, SerializableSupplier<Configuration>> confSerializer) {
    delegate.serializeConfWith(confSerializer);
  }

  @Override
  public String toString() {
    return "LakeFSRefFileIO{refRoot=" + refRoot + "}";
  }

  /** InputFile doing I/O on the resolved location while reporting the logical (relative) one. */
  static final class RefInputFile implements InputFile {
    private final String location;
    private final InputFile physical;

    RefInputFile(String location, InputFile physical) {
      this.location = location;
      this.physical = physical;
    }

    @Override
    public long getLength() {
      return physical.getLength();
    }

    @Override
    public SeekableInputStream newStream() {
      return new RefInputStream(physical.newStream());
    }

    @Override
    public String location() {
      return location;
    }

    @Override
    public boolean exists() {
      return physical.exists();
    }

    @Override
    public String toString() {
      return location + " (" + physical.location() + ")";
    }
  }

  /** OutputFile doing I/O on the resolved location while reporting the logical (relative) one. */
  static final class RefOutputFile implements OutputFile {
    private final String location;
    private final OutputFile physical;

    private final String refRoot;

    RefOutputFile(String location, OutputFile physical, String refRoot) {
      this.location = location;
      this.physical = physical;
      this.refRoot = refRoot;
    }

    @Override
    public PositionOutputStream create() {
      try {
        return new RefOutputStream(physical.create(), location, refRoot);
      } catch (UncheckedIOException e) {
        throw explainCreateFailure(e);
      }
    }

    @Override
    public PositionOutputStream createOrOverwrite() {
      try {
        return new RefOutputStream(physical.createOrOverwrite(), location, refRoot);
      } catch (UncheckedIOException e) {
        throw explainCreateFailure(e);
      }
    }

    private RuntimeException explainCreateFailure(RuntimeException e) {
      if (!NotFound.isMissingRef(e)) {
        return e;
      }
      IOException cause = e.getCause() instanceof IOException ? (IOException) e.getCause() : new IOException(e);
      return new UncheckedIOException(explainWriteFailure(cause, location, refRoot));
    }

    @Override
    public String location() {
      return location;
    }

    @Override
    public InputFile toInputFile() {
      return new RefInputFile(location, physical.toInputFile());
    }

    @Override
    public String toString() {
      return location + " (" + physical.location() + ")";
    }
  }

  /*
   * Stream wrappers. Iceberg's Parquet/Avro readers and writers unwrap streams that implement
   * DelegatingInputStream/DelegatingOutputStream (as HadoopFileIO's do) down to the Hadoop stream
   * and drop the wrapper; HadoopFileIO's wrappers close the Hadoop stream in their finalizer, so a
   * GC in the middle of a write closes the file under the writer ("ClosedChannelException" when
   * the Parquet footer is written). HadoopFileIO avoids that only because Iceberg special-cases
   * HadoopInputFile/HadoopOutputFile. These plain wrappers keep the Hadoop wrapper reachable for the
   * stream's lifetime and are not unwrapped.
   */

  /** Non-delegating wrapper around a {@link SeekableInputStream}. */
  static final class RefInputStream extends SeekableInputStream {
    private final SeekableInputStream in;

    RefInputStream(SeekableInputStream in) {
      this.in = in;
    }

    @Override
    public long getPos() throws IOException {
      return in.getPos();
    }

    @Override
    public void seek(long newPos) throws IOException {
      in.seek(newPos);
    }

    @Override
    public int read() throws IOException {
      return in.read();
    }

    @Override
    public int read(byte[] b, int off, int len) throws IOException {
      return in.read(b, off, len);
    }

    @Override
    public long skip(long n) throws IOException {
      return in.skip(n);
    }

    @Override
    public int available() throws IOException {
      return in.available();
    }

    @Override
    public void close() throws IOException {
      in.close();
    }
  }

  /** Non-delegating wrapper around a {@link PositionOutputStream}. */
  static final class RefOutputStream extends PositionOutputStream {
    private final PositionOutputStream out;
    private final String location;
    private final String refRoot;

    RefOutputStream(PositionOutputStream out, String location, String refRoot) {
      this.out = out;
      this.location = location;
      this.refRoot = refRoot;
    }

    @Override
    public long getPos() throws IOException {
      return out.getPos();
    }

    @Override
    public long storedLength() throws IOException {
      return out.storedLength();
    }

    @Override
    public void write(int b) throws IOException {
      try {
        out.write(b);
      } catch (IOException e) {
        throw explainWriteFailure(e, location, refRoot);
      }
    }

    @Override
    public void write(byte[] b, int off, int len) throws IOException {
      try {
        out.write(b, off, len);
      } catch (IOException e) {
        throw explainWriteFailure(e, location, refRoot);
      }
    }

    @Override
    public void flush() throws IOException {
      try {
        out.flush();
      } catch (IOException e) {
        throw explainWriteFailure(e, location, refRoot);
      }
    }

    @Override
    public void close() throws IOException {
      try {
        out.close();
      } catch (IOException e) {
        throw explainWriteFailure(e, location, refRoot);
      }
    }
  }
}
