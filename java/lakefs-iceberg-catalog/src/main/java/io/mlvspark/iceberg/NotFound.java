package io.mlvspark.iceberg;

import java.io.FileNotFoundException;
import org.apache.iceberg.exceptions.NotFoundException;

/**
 * Classifies "object/ref does not exist" errors. Through lakeFS's S3 gateway a missing object is
 * an HTTP 404 that S3A maps to {@link FileNotFoundException}; a missing repository (and, depending
 * on the lakeFS version, a missing ref) comes back as {@code NoSuchBucket}, which S3A maps to
 * {@code org.apache.hadoop.fs.s3a.UnknownStoreException} (matched by name: hadoop-aws is optional
 * at compile time).
 *
 * <p>lakeFS (checked with v1.33) answers HEAD and LIST requests on a ref that does not exist with
 * 400 Bad Request, which S3A reports as {@code AWSBadRequestException}; {@link #isMissingRef}
 * also accepts that, and is used only for existence checks and listings.
 */
final class NotFound {
  private NotFound() {}

  static boolean isNotFound(Throwable t) {
    for (Throwable c = t; c != null; c = c.getCause() == c ? null : c.getCause()) {
      if (c instanceof FileNotFoundException || c instanceof NotFoundException) {
        return true;
      }
      if (c.getClass().getName().endsWith("UnknownStoreException")) {
        return true;
      }
      String msg = c.getMessage();
      if (msg != null && (msg.contains("NoSuchBucket") || msg.contains("NoSuchKey"))) {
        return true;
      }
    }
    return false;
  }

  /** {@link #isNotFound}, or the HTTP 400 lakeFS returns for HEAD/LIST on a missing ref. */
  static boolean isMissingRef(Throwable t) {
    if (isNotFound(t)) {
      return true;
    }
    for (Throwable c = t; c != null; c = c.getCause() == c ? null : c.getCause()) {
      if (c.getClass().getName().endsWith("AWSBadRequestException")) {
        return true;
      }
    }
    return false;
  }
}
