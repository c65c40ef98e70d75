package io.mlvspark.iceberg;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.util.Objects;
import org.apache.iceberg.BaseMetastoreTableOperations;
import org.apache.iceberg.TableMetadata;
import org.apache.iceberg.TableProperties;
import org.apache.iceberg.exceptions.AlreadyExistsException;
import org.apache.iceberg.exceptions.CommitFailedException;
import org.apache.iceberg.exceptions.CommitStateUnknownException;
import org.apache.iceberg.exceptions.NoSuchTableException;
import org.apache.iceberg.exceptions.RuntimeIOException;
import org.apache.iceberg.exceptions.ValidationException;
import org.apache.iceberg.io.FileIO;

/**
 * Table operations for one table at one lakeFS ref.
 *
 * <p>Metadata JSON files are written through {@link LakeFSRefFileIO} under {@code
 * <table>/metadata/}; the current one is named by a small pointer object {@code
 * <table>/metadata/version-hint.text} that holds its ref-relative location. A missing pointer
 * means the table does not exist at this ref.
 *
 * <p>Concurrency: lakeFS's S3 gateway has no atomic compare-and-swap, so {@link #doCommit}
 * re-reads the pointer before and after writing the new metadata file and fails with {@link
 * CommitFailedException} (Iceberg then refreshes and retries) if another writer moved it. That
 * narrows, but cannot close, the race window: the supported pattern is one writer per table per
 * branch (as with Delta on S3); use separate branches for concurrent writers and let lakeFS merge
 * them (a merge where both sides changed the same table conflicts on the pointer object).
 */
public class LakeFSRefTableOperations extends BaseMetastoreTableOperations {
  private static final System.Logger LOG =
      System.getLogger(LakeFSRefTableOperations.class.getName());

  /** Name of the current-metadata pointer object inside {@code <table>/metadata/}. */
  public static final String POINTER_FILE = "version-hint.text";

  private static final String[] PATH_PROPERTIES = {
    TableProperties.WRITE_DATA_LOCATION,
    TableProperties.WRITE_METADATA_LOCATION,
    "write.object-storage.path", // deprecated TableProperties.OBJECT_STORE_PATH
    "write.folder-storage.path" // deprecated TableProperties.WRITE_FOLDER_STORAGE_LOCATION
  };

  private final LakeFSRefFileIO io;
  private final String repository;
  private final String ref;
  private final String tableLocation;
  private final String tableName;
  private final String fullName;

  /**
   * @param io FileIO bound to the ref root
   * @param repository lakeFS repository (for messages)
   * @param ref lakeFS ref (for messages)
   * @param tableLocation ref-relative table location, e.g. {@code ml/t}
   * @param tableName table name without the ref, e.g. {@code ml.t} (for messages)
   * @param fullName full name used by Iceberg for logging, e.g. {@code lakefs.main.ml.t}
   */
  public LakeFSRefTableOperations(
      LakeFSRefFileIO io,
      String repository,
      String ref,
      String tableLocation,
      String tableName,
      String fullName) {
    this.io = io;
    this.repository = repository;
    this.ref = ref;
    this.tableLocation = tableLocation;
    this.tableName = tableName;
    this.fullName = fullName;
  }

  @Override
  public FileIO io() {
    return io;
  }

  @Override
  protected String tableName() {
    return fullName;
  }

  /** Ref-relative location of the current-metadata pointer object. */
  public String pointerLocation() {
    return tableLocation + "/metadata/" + POINTER_FILE;
  }

  String describe() {
    return String.format(
        "table '%s' at lakeFS ref '%s' (repository '%s', %s)",
        tableName, ref, repository, io.resolve(tableLocation));
  }

  @Override
  protected void doRefresh() {
    String metadataLocation = readPointer();
    if (metadataLocation == null) {
      if (currentMetadataLocation() != null) {
        throw new NoSuchTableException(
            "Table '%s' no longer exists at lakeFS ref '%s' (repository '%s'): its pointer %s is gone",
            tableName, ref, repository, io.resolve(pointerLocation()));
      }
      // table does not exist (yet): keep current() == null
      refreshFromMetadataLocation(null);
      return;
    }
    try {
      refreshFromMetadataLocation(metadataLocation);
    } catch (RuntimeException e) {
      if (NotFound.isNotFound(e)) {
        throw new NoSuchTableException(
            e,
            "Cannot load %s: its pointer names metadata file %s, which does not exist",
            describe(),
            metadataLocation);
      }
      throw e;
    }
  }

  @Override
  protected void doCommit(TableMetadata base, TableMetadata metadata) {
    boolean newTable = base == null;
    String expected = newTable ? null : currentMetadataLocation();
    String actual = readPointer();
    checkPointer(newTable, expected, actual);
    validateRelativeLocations(metadata);

    // register_table commits an existing metadata file: never delete that one on failure
    boolean writesNewFile = !(newTable && metadata.metadataFileLocation() != null);
    String newMetadataLocation = writeNewMetadataIfRequired(newTable, metadata);

    // Re-check right before moving the pointer to keep the race window small (no CAS on S3).
    String again = readPointer();
    if (!Objects.equals(again, actual)) {
      if (writesNewFile) {
        deleteQuietly(newMetadataLocation);
      }
      checkPointer(newTable, expected, again);
      throw new CommitFailedException(
          "Cannot commit %s: its current metadata changed concurrently (another writer on the same"
              + " branch?)",
          describe());
    }

    try {
      writePointer(newMetadataLocation);
    } catch (RuntimeException e) {
      String after;
      try {
        after = readPointer();
      } catch (RuntimeException re) {
        e.addSuppressed(re);
        throw new CommitStateUnknownException(e);
      }
      if (newMetadataLocation.equals(after)) {
        LOG.log(
            System.Logger.Level.WARNING,
            "Pointer write of " + describe() + " reported an error but the pointer was updated",
            e);
      } else if (Objects.equals(after, actual)) {
        if (writesNewFile) {
          deleteQuietly(newMetadataLocation);
        }
        throw new RuntimeIOException(
            new IOException(e),
            "Failed to commit %s: could not write pointer %s",
            describe(),
            io.resolve(pointerLocation()));
      } else {
        throw new CommitStateUnknownException(e);
      }
    }
    LOG.log(System.Logger.Level.DEBUG, () -> "Committed " + describe() + " -> " + newMetadataLocation);
  }

  private void checkPointer(boolean newTable, String expected, String actual) {
    if (newTable) {
      if (actual != null) {
        throw new AlreadyExistsException(
            "Table '%s' already exists at lakeFS ref '%s' (repository '%s')",
            tableName, ref, repository);
      }
    } else if (!Objects.equals(expected, actual)) {
      if (actual == null) {
        throw new CommitFailedException(
            "Cannot commit %s: the table was dropped concurrently", describe());
      }
      throw new CommitFailedException(
          "Cannot commit %s: current metadata is %s but the commit is based on %s (concurrent"
              + " writer on the same branch?)",
          describe(), actual, expected);
    }
  }

  /**
   * Refuses metadata whose table location or location-overriding properties are absolute: those
   * would be written into manifests and tie the table to one ref.
   */
  private void validateRelativeLocations(TableMetadata metadata) {
    if (LakeFSRefFileIO.isAbsolute(metadata.location())) {
      // registered tables with absolute locations keep working but are not ref-safe
      LOG.log(
          System.Logger.Level.WARNING,
          () -> describe() + " has an absolute location " + metadata.location() + ": not ref-relative");
    }
    for (String prop : PATH_PROPERTIES) {
      String value = metadata.properties().get(prop);
      if (value != null && LakeFSRefFileIO.isAbsolute(value)) {
        throw new ValidationException(
            "Cannot commit %s: table property %s=%s is an absolute location; LakeFSRefCatalog"
                + " needs ref-relative paths (e.g. %s) so the table stays valid across lakeFS"
                + " branches",
            describe(),
            prop,
            value,
            LakeFSRefFileIO.isAbsolute(io.relativize(value))
                ? tableLocation + "/data"
                : io.relativize(value));
      }
    }
  }

  /** The pointer's content (a metadata file location), or null when the table does not exist. */
  String readPointer() {
    for (int attempt = 0; ; attempt++) {
      String content;
      try (InputStream in = io.newInputFile(pointerLocation()).newStream()) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        in.transferTo(out);
        content = out.toString(StandardCharsets.UTF_8).trim();
      } catch (IOException | RuntimeException e) {
        if (NotFound.isNotFound(e)) {
          return null;
        }
        throw new RuntimeIOException(
            e instanceof IOException ? (IOException) e : new IOException(e),
            "Failed to read the current-metadata pointer of %s",
            describe());
      }
      if (!content.isEmpty()) {
        return content;
      }
      // An empty pointer can be observed on a local file system while it is being rewritten.
      if (attempt >= 5) {
        throw new IllegalStateException(
            String.format("The current-metadata pointer of %s is empty", describe()));
      }
      sleep(50L * (attempt + 1));
    }
  }

  private void writePointer(String metadataLocation) {
    try (OutputStream out = io.newOutputFile(pointerLocation()).createOrOverwrite()) {
      out.write(metadataLocation.getBytes(StandardCharsets.UTF_8));
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  private void deleteQuietly(String location) {
    try {
      io.deleteFile(location);
    } catch (RuntimeException e) {
      LOG.log(
          System.Logger.Level.WARNING,
          "Failed to delete uncommitted metadata file " + location + " of " + describe(),
          e);
    }
  }

  private static void sleep(long millis) {
    try {
      Thread.sleep(millis);
    } catch (InterruptedException ie) {
      Thread.currentThread().interrupt();
      throw new RuntimeException(ie);
    }
  }
}
