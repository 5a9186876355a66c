// The Vant components the patient app uses, each with only its own stylesheet (not Vant's whole CSS).
import {
  Button, Cell, CellGroup, ConfigProvider, Empty, Field, Icon, Loading, NavBar, NoticeBar, Skeleton, Switch, Tag,
} from 'vant'
import 'vant/es/button/style/index'
import 'vant/es/cell/style/index'
import 'vant/es/cell-group/style/index'
import 'vant/es/config-provider/style/index'
import 'vant/es/empty/style/index'
import 'vant/es/field/style/index'
import 'vant/es/icon/style/index'
import 'vant/es/loading/style/index'
import 'vant/es/nav-bar/style/index'
import 'vant/es/notice-bar/style/index'
import 'vant/es/skeleton/style/index'
import 'vant/es/switch/style/index'
import 'vant/es/tag/style/index'
// function-style components (showToast, showDialog) need their styles imported by hand
import 'vant/es/toast/style/index'
import 'vant/es/dialog/style/index'

const components = [
  Button, Cell, CellGroup, ConfigProvider, Empty, Field, Icon, Loading, NavBar, NoticeBar, Skeleton, Switch, Tag,
]

export default {
  install(app) {
    for (const component of components) app.use(component)
  },
}
