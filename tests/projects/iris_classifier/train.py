"""Train the iris classifier and save it to the BentoML model store."""

import bentoml
import joblib
from sklearn import datasets, svm

iris = datasets.load_iris()
X, y = iris.data, iris.target

clf = svm.SVC(gamma="scale")
clf.fit(X, y)

with bentoml.models.create(name="iris_clf") as model_ref:
    joblib.dump(clf, model_ref.path_of("model.pkl"))
    print(f"Model saved: {model_ref}")
